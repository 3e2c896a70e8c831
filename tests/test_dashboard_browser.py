"""The dashboard in a real headless Chromium (Debian's, driven by playwright): the page
loads from the hub, counts the miners as real SDK miners connect and redraws the
prediction chart after a real prediction, all without a reload.

Chromium is required, not optional: without ``/usr/bin/chromium`` this test fails and
says how to install it (``apt-get install chromium``; ``.ci/run`` does so)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from sdk.models import Prediction
from server_stub import AllowListRegistry

from .kit.browser import browser_page
from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key

MINERS = [miner_key(name) for name in ("Bob", "Charlie", "Dave")]
WAIT_MS = 15_000  # generous: only a page that never updates reaches it


async def test_the_page_follows_miners_and_predictions_without_a_reload(start_hub, miner):
    running = await start_hub(heartbeat_interval_s=1.0, registry=AllowListRegistry(
        {key.ss58_address: uid for uid, key in enumerate(MINERS, start=40)}))
    await running.post_games([future_game("g1"), future_game("g2", league="Serie A")])
    problems: list[str] = []
    async with browser_page() as page:
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda message: problems.append(f"console: {message.text}")
                if message.type == "error" else None)
        response = await page.goto(running.server.http_url + "/")
        assert response is not None
        assert response.status == 200
        count = page.locator("#miner-count")
        await expect(count).to_have_text("0", timeout=WAIT_MS)
        await expect(page.locator("#validator")).to_have_text(VALIDATOR.ss58_address)
        await expect(page.locator("#games tbody tr")).to_have_count(2, timeout=WAIT_MS)
        await expect(page.locator("#games")).to_contain_text("g1-home vs g1-away")
        await expect(page.locator("#games")).to_contain_text("Serie A")
        await expect(page.locator("#miners")).to_contain_text("no miner connected")
        await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

        connections = [miner(running.server.url, key) for key in MINERS]
        for conn in connections:
            await conn.start()
        for conn in connections:
            await conn.wait_ready(10)
        await expect(count).to_have_text(str(len(MINERS)), timeout=WAIT_MS)
        rows = page.locator("#miners tbody tr")
        await expect(rows).to_have_count(len(MINERS), timeout=WAIT_MS)
        await expect(rows.first.locator("td").first).to_have_text("40")
        # the hub pings with each heartbeat (every second here): the RTT column fills in
        await expect(rows.first.locator("td").nth(4)).to_have_text(
            _ms_pattern(), timeout=WAIT_MS)

        await expect(page.locator("#minute-count")).to_have_text("0")
        assert await page.locator("#chart rect").count() == 0
        bob = connections[0]
        receipt = await bob.submit(Prediction.for_game(bob.games["g1"], 0, 1.5), timeout=10)
        assert receipt.status == "accepted"
        # (not "this minute": the minute may have turned since)
        await expect(page.locator("#prediction-totals")).to_have_text("1 / 0 / 0",
                                                                       timeout=WAIT_MS)
        await expect(page.locator("#chart rect.accepted")).to_have_count(1)
        await expect(rows.first.locator("td").nth(5)).to_have_text("1")  # Bob: accepted

        await connections[-1].close()
        await expect(count).to_have_text(str(len(MINERS) - 1), timeout=WAIT_MS)
        assert await page.evaluate("window.loadedOnce === true")
    assert problems == []


def _ms_pattern() -> Any:
    import re

    return re.compile(r"^\d+\.\d ms$")
