"""``bt-miner`` through typer's CliRunner: agents, status on a prepared outbox, usage
and configuration errors (exit 2, one line naming what was wrong), help texts, and
``submit`` against the in-process dev hub."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bittensor.keyfiles import Keypair
from typer.testing import CliRunner

from agents.cli import app
from agents.cli.common import CliError, parse_agent_options, parse_validators
from agents.cli.main import main
from sdk.outbox import Outbox
from sdk.outbox_files import default_outbox_path, outbox_file_name
from sdk.signing import sign_receipt

ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")
CHARLIE = Keypair.create_from_uri("//Charlie")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands configure the root logger; leave it as it was for other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def one_line_error(result: object) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: ")
    return lines[0]


# -- agents ---------------------------------------------------------------------------------


def test_agents_lists_builtins_with_descriptions() -> None:
    result = runner.invoke(app, ["agents"])
    assert result.exit_code == 0, result.output
    assert "favorite" in result.stdout
    assert "value" in result.stdout
    assert "Flat stake on the favourite" in result.stdout

    result = runner.invoke(app, ["agents", "--json"])
    assert result.exit_code == 0
    listing = {item["name"]: item["description"] for item in json.loads(result.stdout)}
    assert listing["value"].startswith("Fractional Kelly")


# -- status ---------------------------------------------------------------------------------


def _prediction(game_id: str, wager: float, outcome: int = 0) -> dict:
    return {"prediction_id": str(uuid.uuid4()), "game_id": game_id, "miner_uid": None,
            "prediction_date": datetime.now(UTC).isoformat(), "predicted_outcome": outcome,
            "predicted_odds": 2.0, "team_a": "Home FC", "team_b": "Away FC", "wager": wager,
            "team_a_odds": 2.0, "team_b_odds": 3.5, "tie_odds": 3.2, "model_name": "test",
            "confidence_score": None}


def _receipt(prediction_id: str, status: str, code: str) -> dict:
    receipt = {"prediction_id": prediction_id, "status": status, "code": code,
               "message": status, "received_at_ns": "1700000000000000000",
               "miner_hotkey": BOB.ss58_address, "validator_hotkey": ALICE.ss58_address}
    receipt["signature"] = sign_receipt(ALICE, receipt)
    return receipt


def prepare_outbox(directory: Path, today: str) -> Path:
    """An outbox as a miner leaves it: accepted, rejected (two codes), pending."""
    path = directory / default_outbox_path(BOB.ss58_address).name

    async def fill() -> None:
        outbox = await Outbox(path).open()
        plan = [("g-acc", 25.0, "accepted", "ok"), ("g-odds", 10.0, "rejected", "odds_mismatch"),
                ("g-limit", 5.0, "rejected", "wager_limit"), ("g-pend", 7.5, None, None)]
        for game_id, wager, status, code in plan:
            wire = _prediction(game_id, wager)
            await outbox.add(validator_hotkey=ALICE.ss58_address, miner_hotkey=BOB.ss58_address,
                             prediction=wire, signature=None, wager_day=today)
            if status is not None:
                await outbox.settle(wire["prediction_id"], status, code=code, message=status,
                                    receipt=_receipt(wire["prediction_id"], status, code))
        await outbox.close()

    asyncio.run(fill())
    (directory / "hub.sqlite3").write_bytes(b"not an outbox: ignored")
    return path


def test_status_on_a_prepared_outbox(tmp_path: Path) -> None:
    today = datetime.now(UTC).date().isoformat()
    path = prepare_outbox(tmp_path, today)
    result = runner.invoke(app, ["status", "--outbox-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert str(path.name) in out.replace("\n", "")
    assert "pending 1, accepted 1, duplicate 0, rejected 2 (odds_mismatch=1, wager_limit=1)" in out
    assert f"wagered today ({today} UTC): 32.50" in out  # accepted + pending
    assert "✓ signed" in out
    assert "rejected: odds_mismatch" in out
    assert "g-pend" in out

    result = runner.invoke(app, ["status", "--outbox-dir", str(tmp_path), "--json", "--last",
                                 "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["outboxes"]
    assert len(report) == 1
    assert report[0]["pending"] == 1
    assert report[0]["accepted"] == 1
    assert report[0]["rejected"] == {"odds_mismatch": 1, "wager_limit": 1}
    assert len(report[0]["latest"]) == 2
    verified = [e["receipt_verified"] for e in report[0]["latest"] if e["receipt"]]
    assert verified
    assert all(verified)


def test_status_shows_results_per_day(tmp_path: Path) -> None:
    """Settled and open confirmed predictions on two UTC days; pending and rejected ones
    count for nothing."""
    path = tmp_path / outbox_file_name(BOB.ss58_address, ALICE.ss58_address)
    # (day, game, predicted outcome, wager, status); every prediction is at odds 2.0
    plan = [("2026-11-01", "won", 0, 10.0, "accepted"), ("2026-11-01", "lost", 1, 30.0,
                                                          "duplicate"),
            ("2026-11-01", "open", 0, 4.0, "accepted"), ("2026-11-01", "won", 0, 50.0, None),
            ("2026-11-02", "won", 0, 8.0, "accepted"), ("2026-11-02", "won", 0, 9.0,
                                                         "rejected")]

    async def fill() -> None:
        outbox = await Outbox(path).open()
        for day, game_id, outcome, wager, status in plan:
            wire = _prediction(game_id, wager, outcome)
            await outbox.add(validator_hotkey=ALICE.ss58_address, miner_hotkey=BOB.ss58_address,
                             prediction=wire, signature=None, wager_day=day)
            if status is not None:
                code = "odds_mismatch" if status == "rejected" else "ok"
                await outbox.settle(wire["prediction_id"], status, code=code, message=status)
        await outbox.record_outcomes(ALICE.ss58_address, {"won": 0, "lost": 0, "open": 3})
        await outbox.close()

    asyncio.run(fill())
    result = runner.invoke(app, ["status", "--outbox-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)["outboxes"][0]["results"]
    assert results == [
        {"day": "2026-11-01", "settled": 2, "wins": 1, "wagered": 40.0, "payout": 20.0,
         "profit": -20.0, "roi": -0.5, "hit_rate": 0.5, "open": 1, "open_exposure": 4.0},
        {"day": "2026-11-02", "settled": 1, "wins": 1, "wagered": 8.0, "payout": 16.0,
         "profit": 8.0, "roi": 1.0, "hit_rate": 1.0, "open": 0, "open_exposure": 0.0}]

    result = runner.invoke(app, ["status", "--outbox-dir", str(tmp_path)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    cells = [line.replace("│", " ").split() for line in result.stdout.splitlines()]
    rows = {row[0]: row[1:] for row in cells if row and row[0].startswith("2026-11-0")}
    assert rows["2026-11-01"] == ["2", "40.00", "20.00", "-20.00", "-50.0%", "50.0%", "1",
                                  "4.00"]
    assert rows["2026-11-02"] == ["1", "8.00", "16.00", "+8.00", "100.0%", "100.0%", "0",
                                  "0.00"]
    assert "won +10.00" in result.stdout  # the latest predictions show their result
    assert "lost -30.00" in result.stdout


def test_status_reports_a_damaged_outbox_and_shows_the_others(tmp_path: Path) -> None:
    today = datetime.now(UTC).date().isoformat()
    prepare_outbox(tmp_path, today)
    damaged = tmp_path / outbox_file_name(CHARLIE.ss58_address, ALICE.ss58_address)
    damaged.write_bytes(b"this is not an SQLite database, but it is named like an outbox")
    result = runner.invoke(app, ["status", "--outbox-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    reports = {r["miner_hotkey"]: r for r in json.loads(result.stdout)["outboxes"]}
    assert reports[CHARLIE.ss58_address]["error"] == (
        "DatabaseError: file is not a database")
    assert reports[BOB.ss58_address]["error"] is None
    assert reports[BOB.ss58_address]["accepted"] == 1


def test_status_empty_and_missing_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--outbox-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "nothing submitted yet" in result.stdout
    missing = tmp_path / "nope"
    result = runner.invoke(app, ["status", "--outbox-dir", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in one_line_error(result)


# -- usage and configuration errors: exit 2 ---------------------------------------------------


def test_bad_agent_path_exits_2() -> None:
    result = runner.invoke(app, ["run", "--dev", "--agent", "no_such_pkg.agents:Mine"])
    assert result.exit_code == 2
    assert "no_such_pkg.agents" in one_line_error(result)

    result = runner.invoke(app, ["run", "--dev", "--agent", "valu"])
    assert result.exit_code == 2
    assert "did you mean 'value'" in one_line_error(result)

    result = runner.invoke(app, ["run", "--dev", "--agent", "agents.builtin:market"])
    assert result.exit_code == 2
    assert "not a subclass of agents.Agent" in one_line_error(result)

    result = runner.invoke(app, ["run", "--dev", "--agent-opt", "kelly=7"])
    assert result.exit_code == 2
    assert "kelly" in one_line_error(result)


def test_missing_wallet_exits_2_naming_the_path(tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "run", "--wallet.name", "nope", "--wallet.hotkey", "hot", "--wallet.path", str(tmp_path),
        "--validator", f"{ALICE.ss58_address}@ws://127.0.0.1:9"])
    assert result.exit_code == 2
    line = one_line_error(result)
    assert str(tmp_path / "nope" / "hotkeys" / "hot") in line

    result = runner.invoke(app, [
        "submit", "--wallet.name", "nope", "--wallet.path", str(tmp_path), "--validator",
        f"{ALICE.ss58_address}@ws://127.0.0.1:9", "--game-id", "g", "--outcome", "0",
        "--wager", "1"])
    assert result.exit_code == 2
    assert str(tmp_path / "nope" / "hotkeys" / "default") in one_line_error(result)


@pytest.mark.parametrize(("args", "fragment"), [
    (["run"], "choose where the validators come from"),
    (["run", "--dev", "--netuid", "3"], "got: --dev, --netuid"),
    (["run", "--validator", "ws://127.0.0.1:1"], "needs a --validator-hotkey"),
    (["run", "--validator", "nothex@ws://127.0.0.1:1"], "not a valid SS58"),
    (["run", "--validator", "ftp://x", "--validator-hotkey", ALICE.ss58_address],
     "not a ws://"),
    (["run", "--dev", "--agent-opt", "novalue"], "KEY=VALUE"),
    (["watch"], "talks to one validator"),
    (["submit", "--dev", "--validator", f"{ALICE.ss58_address}@ws://127.0.0.1:1",
      "--game-id", "g", "--outcome", "0", "--wager", "1"], "either --dev or --validator"),
])
def test_usage_errors_exit_2(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert fragment in one_line_error(result)


def test_bad_flag_is_one_line_through_main(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--no-such-flag"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: No such option: --no-such-flag (see 'bt-miner run --help')"]


def test_validator_pairing() -> None:
    bob, alice = BOB.ss58_address, ALICE.ss58_address
    charlie = Keypair.create_from_uri("//Charlie").ss58_address
    found = parse_validators(["ws://a:1", f"{bob}@ws://b:2", "http://c:3"], [alice, charlie])
    assert [(v.hotkey, v.url) for v in found] == [
        (alice, "ws://a:1"), (bob, "ws://b:2"), (charlie, "http://c:3")]
    with pytest.raises(CliError, match="more than once"):
        parse_validators([f"{bob}@ws://b:2", f"{bob}@ws://c:3"], [])
    assert parse_agent_options(["kelly=0.5", "sports=[\"soccer\"]", "name=x"]) == {
        "kelly": 0.5, "sports": ["soccer"], "name": "x"}


def test_help_documents_every_flag_and_the_exit_codes() -> None:
    for command in ("run", "demo", "watch", "submit", "status", "agents"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        text = re.sub(r"\s+", " ", result.stdout)
        assert "Exit codes: 0 ok" in text
        assert "3 permanent refusal" in text
        options = re.findall(r"(--[a-z][a-z.-]+)", result.stdout)
        assert options, command
    text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout
    for flag in ("--agent", "--validator", "--validator-hotkey", "--netuid",
                 "--subtensor.network", "--validator-min-stake", "--wallet.name",
                 "--wallet.hotkey", "--wallet.path", "--outbox-dir", "--daily-budget",
                 "--log-format", "--dev", "--duration"):
        assert flag in text, flag


# -- submit against the dev hub (in this process) ---------------------------------------------


def test_submit_dev_prints_receipt_or_rejection_code() -> None:
    result = runner.invoke(app, ["submit", "--dev", "--game-id", "sim-0-4", "--outcome", "1",
                                 "--wager", "5", "--timeout", "15"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("accepted: prediction ")
    assert "(verified)" in result.stdout

    result = runner.invoke(app, ["submit", "--dev", "--game-id", "sim-0-4", "--outcome", "0",
                                 "--wager", "5", "--odds", "99", "--json", "--timeout", "15"])
    assert result.exit_code == 1, result.output
    answer = json.loads(result.stdout)
    assert answer["status"] == "rejected"
    assert answer["code"] == "odds_mismatch"

    result = runner.invoke(app, ["submit", "--dev", "--game-id", "no-such-game", "--outcome",
                                 "0", "--wager", "5", "--timeout", "15"])
    assert result.exit_code == 1
    assert result.stdout.startswith("rejected [unknown_game]")


def test_run_dev_with_duration_in_process(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    result = runner.invoke(app, ["run", "--dev", "--duration", "1.5", "--agent", "favorite",
                                 "--agent-opt", "stake=3", "--outbox-dir", str(tmp_path),
                                 "--log-format", "json"])
    assert result.exit_code == 0, result.output
    accepted = int(re.search(r"(\d+) accepted", result.stdout).group(1))  # type: ignore[union-attr]
    assert accepted >= 1
    assert "per game" in result.stdout
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(entry["msg"].startswith("bt-miner: agent 'favorite'") for entry in logs)
    assert all({"ts", "level", "logger", "msg"} <= set(entry) for entry in logs)
    # the outbox stayed where it was asked to be, with this run's receipts
    status = runner.invoke(app, ["status", "--outbox-dir", str(tmp_path), "--json"])
    report = json.loads(status.stdout)["outboxes"][0]
    assert report["accepted"] == accepted
    assert report["pending"] == 0
    assert datetime.now(UTC) - started < timedelta(seconds=30)


def test_watch_dev_shows_the_games() -> None:
    result = runner.invoke(app, ["watch", "--dev", "--duration", "1", "--rows", "4"])
    assert result.exit_code == 0, result.output
    assert "bt-miner watch" in result.stdout
    assert "open" in result.stdout
    assert "sim-0-0" in result.stdout
    assert "more games not shown" in result.stdout
