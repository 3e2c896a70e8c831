"""The hub's store in PostgreSQL (asyncpg), shared by several hubs of one validator.

Predictions are keyed by (miner_hotkey, prediction_id) as in the SQLite store, so a
resend is answered with the original receipt whichever hub stored it. The daily wager
limit is enforced here, in the transaction that inserts: the hub's in-memory ledger
only knows its own predictions, and two hubs must never both squeeze a miner under
the limit. One call of a server-side function is that transaction (one round trip,
for every prediction that arrived while the pool's connections were busy; each of them
in turn):

1. lock the miner's total for the day (``wager_totals`` row, ``SELECT ... FOR UPDATE``):
   one miner's predictions of one day take turns, on every hub;
2. a prediction already stored is a duplicate (its receipt), before any limit check:
   the resend of a stored prediction is a duplicate even when the day is full;
3. over the limit: refused (:data:`~sdk.codes.ErrorCode.WAGER_LIMIT`), nothing written;
4. insert the prediction and raise the total; the commit ends the call.

Receipts and predictions are kept as JSON text, not jsonb: a receipt reads back
exactly as signed, and predictions may hold what jsonb refuses (NaN, ``\\u0000``).
Statements are prepared once per pooled connection (asyncpg's statement cache).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sdk.codes import ErrorCode
from sdk.jsontext import compact_json, storage_json
from sdk.models import Game
from sdk.validation import Rejection, check_daily_limit

from .extras import import_extra
from .store import PredictionRecord, StoreClosed, StoreResult

R = TypeVar("R")

_EPSILON = 1e-9  # as sdk.validation.check_daily_limit: total + wager > limit + epsilon

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    miner_hotkey   text NOT NULL,
    prediction_id  text NOT NULL,
    game_id        text NOT NULL,
    wager          double precision NOT NULL,
    wager_day      text NOT NULL,
    received_at_ns bigint NOT NULL,
    prediction     text NOT NULL,
    signature      text,
    receipt        text NOT NULL,
    PRIMARY KEY (miner_hotkey, prediction_id)
);
CREATE TABLE IF NOT EXISTS wager_totals (
    wager_day    text NOT NULL,
    miner_hotkey text NOT NULL,
    total        double precision NOT NULL,
    PRIMARY KEY (wager_day, miner_hotkey)
);
CREATE TABLE IF NOT EXISTS games (
    game_id text PRIMARY KEY,
    game    text NOT NULL
);
CREATE OR REPLACE FUNCTION bt_ws_record_prediction(
    p_hotkey text, p_id text, p_game text, p_wager double precision, p_day text,
    p_received bigint, p_prediction text, p_signature text, p_receipt text,
    p_limit double precision)
RETURNS TABLE (outcome text, original_receipt text, prior_total double precision)
LANGUAGE plpgsql AS $fn$
DECLARE
    prior double precision;
    original text;
BEGIN
    SELECT t.total INTO prior FROM wager_totals t
        WHERE t.wager_day = p_day AND t.miner_hotkey = p_hotkey FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO wager_totals VALUES (p_day, p_hotkey, 0) ON CONFLICT DO NOTHING;
        SELECT t.total INTO prior FROM wager_totals t
            WHERE t.wager_day = p_day AND t.miner_hotkey = p_hotkey FOR UPDATE;
    END IF;
    SELECT p.receipt INTO original FROM predictions p
        WHERE p.miner_hotkey = p_hotkey AND p.prediction_id = p_id;
    IF FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, original, prior;
        RETURN;
    END IF;
    IF prior + p_wager > p_limit THEN
        RETURN QUERY SELECT 'limit'::text, NULL::text, prior;
        RETURN;
    END IF;
    INSERT INTO predictions VALUES (p_hotkey, p_id, p_game, p_wager, p_day, p_received,
                                    p_prediction, p_signature, p_receipt)
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN  -- stored meanwhile under another day's lock (a resend at midnight)
        SELECT p.receipt INTO original FROM predictions p
            WHERE p.miner_hotkey = p_hotkey AND p.prediction_id = p_id;
        RETURN QUERY SELECT 'duplicate'::text, original, prior;
        RETURN;
    END IF;
    UPDATE wager_totals t SET total = prior + p_wager
        WHERE t.wager_day = p_day AND t.miner_hotkey = p_hotkey;
    RETURN QUERY SELECT 'stored'::text, NULL::text, prior;
END
$fn$;
CREATE OR REPLACE FUNCTION bt_ws_record_predictions(
    p_hotkeys text[], p_ids text[], p_games text[], p_wagers double precision[],
    p_days text[], p_received bigint[], p_predictions text[], p_signatures text[],
    p_receipts text[], p_limit double precision)
RETURNS TABLE (idx integer, outcome text, original_receipt text,
               prior_total double precision)
LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN QUERY SELECT i, r.* FROM bt_ws_record_prediction(
            p_hotkeys[i], p_ids[i], p_games[i], p_wagers[i], p_days[i], p_received[i],
            p_predictions[i], p_signatures[i], p_receipts[i], p_limit) r;
    END LOOP;
END
$fn$;
"""

_SCHEMA_LOCK = 0x62742D7773  # "bt-ws": hubs opening at once create the schema in turn

_RECORD_MANY = ("SELECT * FROM bt_ws_record_predictions($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                " $10)")
_MAX_BATCH = 256
"""Predictions recorded by one call (one transaction) at most."""
_RECEIPT = "SELECT receipt FROM predictions WHERE miner_hotkey = $1 AND prediction_id = $2"
_WAGERED = "SELECT total FROM wager_totals WHERE wager_day = $1 AND miner_hotkey = $2"
_SAVE_GAMES = """
INSERT INTO games (game_id, game) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (game_id) DO UPDATE SET game = EXCLUDED.game
"""
_LOAD_GAMES = "SELECT game FROM games ORDER BY game_id"


def is_postgres_url(url: str) -> bool:
    """True for ``postgresql://`` and ``postgres://`` URLs (anything else is a path)."""
    return url.startswith(("postgresql://", "postgres://"))


def redact(dsn: str) -> str:
    """The DSN without its password, for logs and ``/ws/health``."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}{netloc}").geturl()


class PostgresStore:
    """Predictions and games in a PostgreSQL database (``dsn``), through a pool of
    ``pool_size`` connections; every write resolves after its COMMIT.

    ``daily_limit`` is the validator's daily wager limit per miner, checked at commit
    (:class:`~server_stub.store.StoreResult` with a ``rejection`` when over)."""

    engine = "postgresql"

    def __init__(self, dsn: str, *, daily_limit: float, pool_size: int = 8,
                 connect_timeout_s: float = 10.0) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.dsn = dsn
        self.daily_limit = daily_limit
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self._pool: Any = None
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()  # reads and game saves
        self._flushers: set[asyncio.Task[None]] = set()  # record predictions
        self._commits = 0
        self._committed_ops = 0
        self._pending: list[tuple[PredictionRecord, asyncio.Future[StoreResult]]] = []
        self._flushing = 0
        self._sending = 0
        self._errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)
        """What a failed call raises (asyncpg's errors added once it is imported)."""
        self._refusals: tuple[type[BaseException], ...] = ()

    @property
    def commits(self) -> int:
        """Write transactions committed so far (predictions and game saves)."""
        return self._commits

    @property
    def committed_ops(self) -> int:
        """Predictions and game saves in those transactions (predictions are grouped)."""
        return self._committed_ops

    @property
    def queued(self) -> int:
        """Predictions waiting or being recorded, and other operations running."""
        return len(self._pending) + self._sending + len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    async def open(self) -> PostgresStore:
        """Connect the pool and create what is missing of the schema (under an advisory
        lock, so hubs started together do not race on the DDL)."""
        asyncpg = import_extra("asyncpg", "a postgresql:// store")
        self._refusals = (asyncpg.PostgresError,)
        self._errors = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=self.pool_size, max_size=self.pool_size,
                timeout=self.connect_timeout_s)
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                await connection.execute(_SCHEMA)
        except self._errors as exc:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            raise ConnectionError(
                f"cannot open the PostgreSQL store {redact(self.dsn)}: {exc}") from exc
        return self

    async def close(self) -> None:
        """Finish what is in flight, then close the pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        while self._tasks or self._flushers:
            await asyncio.gather(*self._tasks, *self._flushers, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _run(self, coro: Coroutine[Any, Any, R]) -> asyncio.Future[R]:
        if self._closed or self._pool is None:
            coro.close()
            raise StoreClosed(f"store {redact(self.dsn)} is closed")
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- predictions ------------------------------------------------------------

    def record(self, record: PredictionRecord) -> asyncio.Future[StoreResult]:
        """Insert unless (hotkey, id) exists, within the daily limit; resolves after the
        commit. Raises :data:`~server_stub.store.StoreClosed` once closed.

        Predictions that arrive while every pooled connection is busy are recorded
        together, by one call (one transaction, one WAL flush), as the SQLite store
        groups its commits; alone, a prediction is sent at once."""
        if self._closed or self._pool is None:
            raise StoreClosed(f"store {redact(self.dsn)} is closed")
        future: asyncio.Future[StoreResult] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if self._flushing < self.pool_size:
            self._flushing += 1
            task = asyncio.ensure_future(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return future

    async def _flush(self) -> None:
        """Record what is pending, a batch at a time, until nothing is."""
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                self._sending += len(batch)
                try:
                    await self._record_batch(batch)
                except BaseException as exc:  # a bug or a cancel: no caller waits forever
                    for _, future in batch:
                        if future.done():
                            continue
                        if isinstance(exc, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(exc)
                    raise
                finally:
                    self._sending -= len(batch)
        finally:
            # in the step that saw nothing pending: a record() after it starts another
            self._flushing -= 1

    async def _record_batch(self, batch: list[tuple[PredictionRecord,
                                                    asyncio.Future[StoreResult]]]) -> None:
        # Each prediction locks its miner's day total until the commit: in one order
        # (day, hotkey) on every hub, so two hubs' batches never wait on each other in
        # a cycle (a deadlock would fail both).
        batch.sort(key=lambda item: (item[0].wager_day, item[0].miner_hotkey))
        records = [record for record, _ in batch]
        try:
            # encoded here, in the task, on a fresh stack: a prediction nested right up
            # to the JSON decoder's limit may not re-encode deep in the caller's stack
            rows = await self._pool.fetch(
                _RECORD_MANY, [r.miner_hotkey for r in records],
                [r.prediction_id for r in records], [r.game_id for r in records],
                [r.wager for r in records], [r.wager_day for r in records],
                [r.received_at_ns for r in records],
                [storage_json(r.prediction) for r in records],
                [r.signature for r in records], [compact_json(r.receipt) for r in records],
                self.daily_limit + _EPSILON)
        except self._errors as exc:
            if len(batch) > 1 and isinstance(exc, self._refusals):
                # one prediction the server refuses (a value it cannot store) must not
                # fail the others it was grouped with: each alone, then
                for item in batch:
                    await self._record_batch([item])
                return
            for _, future in batch:  # the caller learns it: internal_error, resend
                if not future.done():
                    future.set_exception(exc)
            return
        self._commits += 1
        self._committed_ops += len(batch)
        for row in rows:
            record, future = batch[row["idx"] - 1]
            if not future.done():
                future.set_result(self._outcome(record, row))

    def _outcome(self, record: PredictionRecord, row: Any) -> StoreResult:
        outcome = row["outcome"]
        if outcome == "stored":
            return StoreResult(True, record.receipt)
        if outcome == "duplicate":
            return StoreResult(False, json.loads(row["original_receipt"]))
        refused = check_daily_limit(record.wager, row["prior_total"], self.daily_limit)
        return StoreResult(False, None, rejection=refused or Rejection(
            ErrorCode.WAGER_LIMIT, "the daily wager limit is reached"))

    def receipt(self, miner_hotkey: str, prediction_id: str
                ) -> asyncio.Future[dict[str, Any] | None]:
        """The stored receipt of a prediction, or None."""
        return self._run(self._receipt(miner_hotkey, prediction_id))

    async def _receipt(self, miner_hotkey: str, prediction_id: str) -> dict[str, Any] | None:
        text = await self._pool.fetchval(_RECEIPT, miner_hotkey, prediction_id)
        return None if text is None else dict(json.loads(text))

    def wagered(self, miner_hotkey: str, day: str) -> asyncio.Future[float]:
        """Total wager stored for a miner on a UTC day (``YYYY-MM-DD``), every hub's."""
        return self._run(self._wagered(miner_hotkey, day))

    async def _wagered(self, miner_hotkey: str, day: str) -> float:
        total = await self._pool.fetchval(_WAGERED, day, miner_hotkey)
        return 0.0 if total is None else float(total)

    def count(self, miner_hotkey: str | None = None) -> asyncio.Future[int]:
        """Predictions stored (of one miner, or all)."""
        if miner_hotkey is None:
            return self._run(self._count("SELECT count(*) FROM predictions"))
        return self._run(self._count(
            "SELECT count(*) FROM predictions WHERE miner_hotkey = $1", miner_hotkey))

    async def _count(self, query: str, *args: Any) -> int:
        return int(await self._pool.fetchval(query, *args))

    # -- games -----------------------------------------------------------------

    def save_games(self, games: Iterable[Game]) -> asyncio.Future[None]:
        """Upsert games by id in one statement; resolves after the commit."""
        latest = {game.game_id: game.model_dump_json() for game in games}
        return self._run(self._save_games(list(latest), list(latest.values())))

    async def _save_games(self, ids: list[str], games: list[str]) -> None:
        if not ids:
            return
        await self._pool.execute(_SAVE_GAMES, ids, games)
        self._commits += 1
        self._committed_ops += 1

    def load_games(self) -> asyncio.Future[list[Game]]:
        return self._run(self._load_games())

    async def _load_games(self) -> list[Game]:
        rows = await self._pool.fetch(_LOAD_GAMES)
        return [Game.model_validate_json(row[0]) for row in rows]

    def health(self) -> dict[str, Any]:
        """The ``store`` section of ``GET /ws/health``."""
        return {"engine": self.engine, "database": redact(self.dsn),
                "commits": self.commits, "queued": self.queued, "pool_size": self.pool_size}

