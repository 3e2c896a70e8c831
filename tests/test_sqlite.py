"""sdk.sqlite.GroupCommitDB: group commits, per-op results, durability on close."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

from sdk.sqlite import BatchOperation, DatabaseClosed, GroupCommitDB

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"


def insert(key: str, value: object):
    def op(db: sqlite3.Connection) -> int:
        return db.execute("INSERT INTO t VALUES (?, ?)", (key, value)).rowcount

    return op


async def test_ops_queued_together_share_one_commit(tmp_path):
    db = GroupCommitDB(tmp_path / "g.sqlite3", schema=SCHEMA)
    await db.open()
    results = await asyncio.gather(*(db.submit(insert(f"k{i}", i)) for i in range(200)))
    assert results == [1] * 200
    assert db.commits < 20  # 200 ops, a handful of transactions
    await db.close()
    with sqlite3.connect(tmp_path / "g.sqlite3") as check:
        assert check.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 200


async def test_a_failing_op_fails_alone_and_the_rest_of_its_batch_commits(tmp_path):
    db = GroupCommitDB(tmp_path / "g.sqlite3", schema=SCHEMA)
    await db.open()
    await db.submit(insert("dup", 0))
    futures = [db.submit(insert("a", 1)), db.submit(insert("dup", 2)),  # PK violation
               db.submit(insert("b", None)),  # NOT NULL violation
               db.submit(insert("c", 3))]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert outcomes[0] == 1
    assert outcomes[3] == 1
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    rows = await db.submit(lambda c: c.execute("SELECT k, v FROM t ORDER BY k").fetchall())
    assert rows == [("a", 1), ("c", 3), ("dup", 0)]
    await db.close()


async def test_close_commits_what_is_queued_and_refuses_more(tmp_path):
    db = GroupCommitDB(tmp_path / "g.sqlite3", schema=SCHEMA)
    await db.open()
    pending = [db.submit(insert(f"k{i}", i)) for i in range(50)]
    await db.close()
    assert all(f.done() and f.result() == 1 for f in pending)
    with pytest.raises(DatabaseClosed):
        db.submit(insert("late", 1))


class BatchInsert(BatchOperation[int]):
    """An insert that runs with its neighbours in one executemany (counts its calls)."""

    calls: list[int] = []

    def __init__(self, key: str, value: object) -> None:
        self.row = (key, value)

    @classmethod
    def run_many(cls, db: sqlite3.Connection, ops: Sequence[Any]) -> list[int]:
        cls.calls.append(len(ops))
        db.executemany("INSERT INTO t VALUES (?, ?)", [op.row for op in ops])
        return [1] * len(ops)


async def test_batch_operations_queued_together_run_in_one_call_in_queue_order(tmp_path):
    BatchInsert.calls = []
    db = GroupCommitDB(tmp_path / "g.sqlite3", schema=SCHEMA)
    await db.open()
    count = db.submit(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    futures = [db.submit(BatchInsert(f"k{i}", i)) for i in range(100)]
    after = db.submit(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    assert await asyncio.gather(*futures) == [1] * 100
    assert (await count, await after) == (0, 100)  # the plain ops kept their places
    assert sum(BatchInsert.calls) == 100
    assert len(BatchInsert.calls) < 100
    await db.close()


async def test_a_failing_batch_operation_fails_alone(tmp_path):
    db = GroupCommitDB(tmp_path / "g.sqlite3", schema=SCHEMA)
    await db.open()
    await db.submit(BatchInsert("dup", 0))
    futures = [db.submit(BatchInsert("a", 1)), db.submit(BatchInsert("dup", 2)),
               db.submit(BatchInsert("b", 3))]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert outcomes[0] == 1
    assert outcomes[2] == 1
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    await db.close()
    with sqlite3.connect(tmp_path / "g.sqlite3") as check:
        assert check.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [
            ("a", 1), ("b", 3), ("dup", 0)]
