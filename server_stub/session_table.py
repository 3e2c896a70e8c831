"""The hub's connected miners: one :class:`~server_stub.session.MinerSession` per
hotkey, grouped by game filter so a broadcast serialises and frames each update once
per filter (:class:`~server_stub.wsframes.SharedFrame`), and the close handshakes in
flight (slow consumer 4008, deregistered 4003, replaced, shutdown...), each in a task
the table owns until it ends. With several hubs (:mod:`server_stub.backplane.presence`)
each session also has the generation of its connection, and a newer generation of its
hotkey at any hub closes it with 4001."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping

from sdk.codes import CloseCode
from sdk.frames import encode_frame

from .session import MinerSession
from .stats import HubStats
from .stream import GameFilter, GameStream, UpdateRecord
from .wsframes import SharedFrame

__all__ = ["SessionTable"]

_SNAPSHOT_CACHE = 64  # filters; miners of one subnet use few


class SessionTable(Mapping[str, MinerSession]):
    """Read like a ``{hotkey: MinerSession}`` mapping of the open sessions; a session
    leaves it (and every broadcast) the moment its close begins."""

    def __init__(self, *, stream: GameStream, stats: HubStats, close_timeout_s: float) -> None:
        self._stream = stream
        self.stats = stats
        self._close_timeout_s = close_timeout_s
        self._sessions: dict[str, MinerSession] = {}
        self._generations: dict[str, int] = {}  # hotkey -> presence generation, if any
        self._groups: dict[GameFilter, set[MinerSession]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Snapshot frames of the stream's current version, per filter: miners that
        # (re)connect together get the same bytes, serialised and compressed once.
        self._snapshots: dict[GameFilter, SharedFrame] = {}
        self._snapshots_version = -1

    def __getitem__(self, hotkey: str) -> MinerSession:
        return self._sessions[hotkey]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def closing(self) -> int:
        """Close handshakes still in flight."""
        return len(self._closing)

    def group_sizes(self) -> dict[GameFilter, int]:
        """How many sessions each game filter serves (empty groups are dropped)."""
        return {flt: len(members) for flt, members in self._groups.items()}

    # -- membership -------------------------------------------------------------------

    def add(self, session: MinerSession, generation: int | None = None) -> None:
        """Enter a new session (its hotkey's previous one must be closed first);
        ``generation``: its presence claim across hubs, when there is one."""
        self._sessions[session.hotkey] = session
        if generation is None:
            self._generations.pop(session.hotkey, None)
        else:
            self._generations[session.hotkey] = generation
        self._groups.setdefault(session.game_filter, set()).add(session)
        self.stats.connections_total += 1
        self.stats.active_connections = len(self._sessions)

    def remove(self, session: MinerSession) -> None:
        """Take a session out (idempotent; a newer session of its hotkey stays)."""
        if self._sessions.get(session.hotkey) is session:
            del self._sessions[session.hotkey]
            self._generations.pop(session.hotkey, None)
        self._leave_group(session)
        self.stats.active_connections = len(self._sessions)

    def regroup(self, session: MinerSession, flt: GameFilter) -> None:
        """Move a session to the broadcasts of another game filter."""
        self._leave_group(session)
        session.game_filter = flt
        self._groups.setdefault(flt, set()).add(session)

    def _leave_group(self, session: MinerSession) -> None:
        members = self._groups.get(session.game_filter)
        if members is not None:
            members.discard(session)
            if not members:
                del self._groups[session.game_filter]

    # -- sending ----------------------------------------------------------------------

    def broadcast(self, record: UpdateRecord) -> None:
        """Send ``record`` to every session whose filter selects some of its games."""
        self.stats.broadcasts += 1
        for flt, members in list(self._groups.items()):
            if not members:
                continue
            update = self._stream.broadcast_update(record, flt)
            if update is None:
                continue
            # serialised and framed once for every miner of this filter
            self.send_to(list(members), SharedFrame(encode_frame(update)))

    def snapshot_frame(self, flt: GameFilter) -> SharedFrame:
        """The ``game_update`` snapshot for ``flt`` as a frame to share (built once per
        filter and version of the game table)."""
        version = self._stream.version
        if version != self._snapshots_version or len(self._snapshots) >= _SNAPSHOT_CACHE:
            self._snapshots.clear()
            self._snapshots_version = version
        shared = self._snapshots.get(flt)
        if shared is None:
            shared = SharedFrame(self._stream.snapshot_update(flt).encode())
            self._snapshots[flt] = shared
        return shared

    def send_snapshots(self) -> None:
        """Every session gets a snapshot of its filter: the stream was reset (a shared
        stream's new epoch), so what it holds no longer continues."""
        for flt, members in list(self._groups.items()):
            if members:
                self.send_to(list(members), self.snapshot_frame(flt))

    @staticmethod
    def send_to(sessions: Iterable[MinerSession], shared: SharedFrame) -> None:
        """The same message to each of ``sessions`` (each in its negotiated framing)."""
        plain = shared.plain
        for session in sessions:
            session.send_frame(shared.for_window(session.deflate) if session.deflate else plain)

    def on_overflow(self, session: MinerSession) -> None:
        """A session's queue overflowed (:class:`MinerSession` calls it): a slow
        consumer is closed."""
        self.close(session, CloseCode.SLOW_CONSUMER,
                   "send queue overflow: read faster, then resume")

    # -- closing ----------------------------------------------------------------------

    def close(self, session: MinerSession, code: CloseCode, reason: str,
              *, drain: bool = False) -> None:
        """Take the session out of every broadcast now; finish the close handshake in
        a task the table owns (``drain``: deliver what is queued first)."""
        if session.closing:
            return
        session.closing = True
        self.remove(session)
        self.stats.closes[int(code)] += 1
        task = asyncio.create_task(self._finish_close(session, code, reason, drain),
                                   name=f"close-{session.session_id}")
        session.close_task = task
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _finish_close(self, session: MinerSession, code: CloseCode, reason: str,
                            drain: bool) -> None:
        if drain:
            await session.drain(self._close_timeout_s)
        await session.stop_reading(self._close_timeout_s)
        await session.close(int(code), reason, self._close_timeout_s)

    async def close_all(self, code: CloseCode, reason: str, *, drain: bool = False) -> None:
        """Close every session and wait for every close handshake in flight."""
        for session in list(self._sessions.values()):
            self.close(session, code, reason, drain=drain)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    def generation(self, hotkey: str) -> int | None:
        """The presence generation of ``hotkey``'s open session (None: no session, or
        it was admitted while the backplane was unreachable)."""
        return self._generations.get(hotkey)

    def close_superseded(self, hotkey: str, generation: int, *, elsewhere: bool) -> bool:
        """A connection of ``hotkey`` with ``generation`` was made (at another hub when
        ``elsewhere``): close the local session with 4001 if it is older. A session
        without a generation counts as older. True when one was closed."""
        session = self._sessions.get(hotkey)
        if session is None:
            return False
        mine = self._generations.get(hotkey)
        if mine is not None and mine >= generation:
            return False
        where = " at another hub" if elsewhere else ""
        self.close(session, CloseCode.REPLACED,
                   f"replaced by a newer connection of this hotkey{where}")
        return True

    async def close_deregistered(self, hotkeys: set[str]) -> None:
        """The registry's removal callback: close those miners with 4003."""
        for hotkey in hotkeys:
            session = self._sessions.get(hotkey)
            if session is not None:
                self.close(session, CloseCode.DEREGISTERED, "hotkey deregistered from the subnet")
