"""``bt-miner status``: what the outbox files say: pending, confirmed, rejected by code,
wagered today, the results of settled predictions per UTC day, and the latest receipts
(their validator signatures re-verified)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sdk.models import ns_value
from sdk.outbox import COUNTED_STATUSES, Outbox, OutboxEntry
from sdk.outbox_files import parse_outbox_file_name
from sdk.results import DayResults, results_by_day
from sdk.signing import verify_receipt

from .common import EXIT_OK, EXIT_USAGE, CliError, default_outbox_dir
from .views import describe_pick, short

__all__ = ["OutboxReport", "read_outboxes", "show_status"]


@dataclass
class OutboxReport:
    path: Path
    miner_hotkey: str
    validator_hotkey: str
    counts: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    wagered_today: float = 0.0
    day: str = ""
    entries: list[OutboxEntry] = field(default_factory=list)
    results: list[DayResults] = field(default_factory=list)
    error: str | None = None

    def latest(self, limit: int) -> list[OutboxEntry]:
        def when(entry: OutboxEntry) -> int:
            receipt = entry.receipt or {}
            value = ns_value(receipt.get("received_at_ns"))
            return value if value is not None else entry.created_ns

        return sorted(self.entries, key=when)[-limit:][::-1]

    def to_dict(self, limit: int) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "miner_hotkey": self.miner_hotkey,
            "validator_hotkey": self.validator_hotkey,
            "pending": self.counts.get("pending", 0),
            "accepted": self.counts.get("accepted", 0),
            "duplicate": self.counts.get("duplicate", 0),
            "rejected": dict(self.rejected),
            "day": self.day,
            "wagered_today": self.wagered_today,
            "error": self.error,
            "latest": [_entry_dict(e, self.validator_hotkey) for e in self.latest(limit)],
            "results": [day.to_dict() for day in self.results],
        }


def _entry_dict(entry: OutboxEntry, validator_hotkey: str) -> dict[str, Any]:
    return {
        "prediction_id": entry.prediction_id,
        "game_id": entry.game_id,
        "predicted_outcome": entry.prediction.get("predicted_outcome"),
        "predicted_odds": entry.prediction.get("predicted_odds"),
        "wager": entry.wager,
        "wager_day": entry.wager_day,
        "status": entry.status,
        "code": entry.code,
        "message": entry.message,
        "receipt": entry.receipt,
        "receipt_verified": entry.receipt is not None and verify_receipt(entry.receipt,
                                                                         validator_hotkey),
        "outcome": entry.outcome,
        "payout": entry.payout,
    }


def outbox_files(directory: Path) -> list[tuple[Path, str, str | None]]:
    """``(path, miner_hotkey, validator_hotkey)`` of each outbox file in ``directory``
    (``validator_hotkey`` None for a miner's file, which holds every validator's rows;
    a name is given only by the files of older versions)."""
    found = []
    for path in sorted(directory.glob("*.sqlite3")):
        hotkeys = parse_outbox_file_name(path.name)
        if hotkeys is not None:
            found.append((path, *hotkeys))
    return found


async def read_outboxes(directory: Path, *, today: str | None = None) -> list[OutboxReport]:
    """One report per outbox file and validator in ``directory`` (``today``: the UTC
    day to total)."""
    day = today or datetime.now(UTC).date().isoformat()
    reports: list[OutboxReport] = []
    for path, miner_hotkey, validator_hotkey in outbox_files(directory):
        entries: list[OutboxEntry] = []
        error = None
        outbox = Outbox(path)
        try:
            await outbox.open()
            entries = await outbox.entries()
        except (sqlite3.Error, OSError, ValueError) as exc:  # damaged or foreign: say so
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if not outbox.closed:
                await outbox.close()
        groups: dict[tuple[str, str], list[OutboxEntry]] = {}
        if validator_hotkey is not None or error is not None:
            groups[(miner_hotkey, validator_hotkey or "")] = entries
        for entry in entries if not groups else ():
            groups.setdefault((entry.miner_hotkey, entry.validator_hotkey), []).append(entry)
        for (miner, validator), rows in sorted(groups.items()):
            report = OutboxReport(path, miner, validator, day=day, entries=rows, error=error)
            reports.append(report)
            report.wagered_today = sum(
                e.wager for e in rows if e.validator_hotkey == validator
                and e.wager_day == day and e.status in COUNTED_STATUSES)
            for entry in rows:
                report.counts[entry.status] += 1
                if entry.status == "rejected":
                    report.rejected[entry.code or "?"] += 1
            report.results = results_by_day(rows)
    return reports


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _results_table(report: OutboxReport) -> Table:
    table = Table(title="results per UTC day (confirmed predictions)", title_justify="left",
                  pad_edge=False)
    table.add_column("day")
    for name in ("settled", "wagered", "payout", "profit", "ROI", "hit rate", "open",
                 "open exposure"):
        table.add_column(name, justify="right")
    for day in report.results:
        style = "green" if day.profit > 0 else "red" if day.profit < 0 else ""
        table.add_row(day.day, str(day.settled), f"{day.wagered:.2f}", f"{day.payout:.2f}",
                      Text(f"{day.profit:+.2f}", style=style), _ratio(day.roi),
                      _ratio(day.hit_rate), str(day.open), f"{day.open_exposure:.2f}")
    return table


def _table(report: OutboxReport, limit: int) -> Table:
    table = Table(title=f"latest {limit} (newest first)", title_justify="left", pad_edge=False)
    for name, justify in (("when (UTC)", "left"), ("prediction", "left"), ("game", "left"),
                          ("pick", "left"), ("odds", "right"), ("wager", "right"),
                          ("status", "left"), ("result", "right"), ("receipt", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for entry in report.latest(limit):
        receipt = entry.receipt or {}
        at = ns_value(receipt.get("received_at_ns")) or entry.created_ns
        when = datetime.fromtimestamp(at / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = entry.status if entry.status != "rejected" else f"rejected: {entry.code}"
        style = {"accepted": "green", "duplicate": "yellow", "pending": "cyan"}.get(
            entry.status, "red")
        if not receipt:
            proof = Text("-", style="dim")
        elif verify_receipt(receipt, report.validator_hotkey):
            proof = Text(f"✓ signed {str(receipt.get('signature', ''))[:12]}…", style="green")
        else:
            proof = Text("✗ signature does not verify", style="red")
        prediction = entry.prediction
        table.add_row(when, entry.prediction_id[:8], entry.game_id,
                      describe_pick(prediction.get("predicted_outcome"),
                                    prediction.get("team_a"), prediction.get("team_b")),
                      f"{prediction.get('predicted_odds', 0):.2f}", f"{entry.wager:.2f}",
                      Text(status, style=style), _result(entry), proof)
    return table


def _result(entry: OutboxEntry) -> Text:
    """A settled prediction's profit (payout minus wager), or "-" while it is open."""
    if entry.outcome is None or entry.payout is None:
        return Text("-", style="dim")
    profit = entry.payout - entry.wager
    won = entry.prediction.get("predicted_outcome") == entry.outcome
    return Text(f"{'won' if won else 'lost'} {profit:+.2f}", style="green" if won else "red")


async def show_status(*, outbox_dir: Path | None, limit: int, as_json: bool,
                      console: Console) -> int:
    directory = (outbox_dir or default_outbox_dir()).expanduser()
    if outbox_dir is not None and not directory.is_dir():
        raise CliError(f"outbox directory not found: {directory}", EXIT_USAGE)
    reports = await read_outboxes(directory) if directory.is_dir() else []
    if as_json:
        import json

        console.print_json(json.dumps({"outbox_dir": str(directory),
                                       "outboxes": [r.to_dict(limit) for r in reports]}))
        return EXIT_OK
    if not reports:
        console.print(f"no outbox in {directory} (nothing submitted yet)", markup=False,
                      highlight=False, soft_wrap=True)
        return EXIT_OK
    for report in reports:
        console.print(Text.assemble(("outbox ", "bold"), str(report.path)), soft_wrap=True)
        console.print(f"  miner {report.miner_hotkey}  validator {report.validator_hotkey}",
                      markup=False, highlight=False, soft_wrap=True)
        if report.error:
            console.print(f"  cannot read it: {report.error}", style="red", markup=False)
            continue
        rejected = sum(report.rejected.values())
        by_code = ", ".join(f"{c}={n}" for c, n in sorted(report.rejected.items()))
        console.print(
            f"  pending {report.counts.get('pending', 0)}, accepted "
            f"{report.counts.get('accepted', 0)}, duplicate "
            f"{report.counts.get('duplicate', 0)}, rejected {rejected}"
            + (f" ({by_code})" if by_code else ""), markup=False, highlight=False)
        console.print(f"  wagered today ({report.day} UTC): {report.wagered_today:.2f} "
                      f"with {short(report.validator_hotkey)}", markup=False, highlight=False)
        if report.results:
            console.print(_results_table(report))
        if report.entries:
            console.print(_table(report, limit))
    return EXIT_OK
