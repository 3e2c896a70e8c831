"""Write docs/dashboard.png: the hub dashboard with a few miners at work.

Run from the repository root (needs the test extras and Debian's ``chromium``):

    python docs/dashboard_screenshot.py [--seconds 150] [--out docs/dashboard.png]

A :class:`~server_stub.testing.LocalHub` with the game simulator, five SDK miners
(``//Miner1`` ... with UIDs from an allowlist) submitting predictions on open games
for ``--seconds`` (the chart gets one bar per minute), and a few predictions the hub
rejects, sent over the HTTP fallback (the SDK would refuse them before sending). Then
a headless Chromium opens ``GET /`` and takes a full-page screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from bittensor import http_auth
from bittensor.keyfiles import Keypair
from playwright.async_api import async_playwright, expect

from sdk.connection import ValidatorConnection
from sdk.errors import BettensorWSError
from sdk.models import Game, Prediction
from sdk.signing import sign_prediction
from server_stub import AllowListRegistry
from server_stub.testing import LocalHub, brisk_config, brisk_simulator

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def open_games(conn: ValidatorConnection) -> list[Game]:
    soon = datetime.now(UTC) + timedelta(seconds=5)
    return [g for g in conn.games.values() if g.active and g.event_start_date > soon]


async def predict(conn: ValidatorConnection, rng: random.Random) -> None:
    games = open_games(conn)
    if not games:
        return
    game = rng.choice(games)
    with contextlib.suppress(BettensorWSError):  # a game that just started is refused
        await conn.submit(Prediction.for_game(game, rng.choice([0, 1]), rng.choice([1, 2, 5])),
                          timeout=10)


async def refused_over_http(hub: LocalHub, key: Keypair, game: Game, *, odds: float) -> None:
    """A prediction whose odds are not the hub's, over POST /predictions."""
    wire = Prediction.for_game(game, 0, 1.0).model_copy(update={"predicted_odds": odds}).wire()
    body = json.dumps({"prediction": wire, "signature": sign_prediction(key, wire)}).encode()
    headers = http_auth.sign(key, method="POST", path="/predictions", body=body,
                             receiver_ss58=hub.validator_hotkey)
    headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as session, session.post(
            hub.http_url + "/predictions", data=body, headers=headers) as response:
        await response.read()


async def main(out: Path, seconds: float) -> None:
    keys = [Keypair.create_from_uri(f"//Miner{n}") for n in range(1, 6)]
    registry = AllowListRegistry({key.ss58_address: 100 + n for n, key in enumerate(keys)})
    feed = brisk_simulator(games=12, kickoff_spacing=timedelta(seconds=40),
                           match_duration=timedelta(seconds=60))
    rng = random.Random(7)
    async with LocalHub(config=brisk_config(heartbeat_interval_s=2.0), registry=registry,
                        feed=feed) as hub:
        conns = [ValidatorConnection(hub.url, key, hub.validator_hotkey, outbox=":memory:")
                 for key in keys]
        for conn in conns:
            await conn.start()
        for conn in conns:
            await conn.wait_ready(15)
        deadline = time.monotonic() + seconds
        rounds = 0
        while time.monotonic() < deadline:
            busy = conns[: 2 + rounds % 4]  # a changing load, for the chart
            await asyncio.gather(*(predict(conn, rng) for conn in busy))
            if rounds % 15 == 3 and open_games(conns[1]):
                await refused_over_http(hub, keys[1], open_games(conns[1])[0], odds=9.99)
            rounds += 1
            await asyncio.sleep(1.0)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                       args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(hub.http_url + "/")
            # two renders: the first poll's, then one with the RTTs of a full second
            await expect(page.locator("body")).to_have_attribute(
                "data-updates", re.compile(r"^([2-9]|\d\d+)$"), timeout=15_000)
            await page.screenshot(path=str(out), full_page=True)
            await browser.close()
        for conn in conns:
            await conn.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--seconds", type=float, default=150.0,
                        help="how long the miners predict before the screenshot")
    args = parser.parse_args()
    asyncio.run(main(args.out, args.seconds))
