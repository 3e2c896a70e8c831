"""The services the high-availability tests use are there, and the kit cleans up."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from .kit.services import postgres_admin_dsn, postgres_database, private_redis, redis_prefix


async def test_a_test_database_is_created_and_dropped():
    async with postgres_database() as dsn:
        connection = await asyncpg.connect(dsn)
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
    admin = await asyncpg.connect(postgres_admin_dsn())
    name = dsn.rsplit("/", 1)[1]
    assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1",
                                name) == 0
    await admin.close()


async def test_a_redis_prefix_is_cleaned_and_a_private_redis_restarts_empty(tmp_path):
    async with redis_prefix() as (url, prefix):
        client = aioredis.Redis.from_url(url)
        await client.set(f"{prefix}:k", "v")
    assert await client.exists(f"{prefix}:k") == 0
    await client.aclose()
    async with private_redis(tmp_path) as server:
        client = aioredis.Redis.from_url(server.url)
        await client.set("k", "v")
        await server.restart()
        client = aioredis.Redis.from_url(server.url)
        assert await client.get("k") is None
        await client.aclose()
