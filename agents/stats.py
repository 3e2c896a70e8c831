"""Counters of an :class:`~agents.runner.AgentRunner`, per validator and in total,
shaped for a summary table (:meth:`RunnerStats.rows`) or JSON (:meth:`RunnerStats.to_dict`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunnerStats", "ValidatorStats"]


@dataclass
class ValidatorStats:
    """What the runner did with one validator.

    ``submitted``: predictions handed to the connection; ``accepted`` / ``duplicate``
    / ``rejected`` (by code, local pre-check included): their receipts;
    ``unconfirmed``: no receipt within the submit timeout (they stay in the outbox and
    are resent); ``skipped``: picks not submitted, by reason (``budget``, ``repeat``,
    ``unknown_game``, ``started``, ``invalid_pick``, ``no_wager``); ``scaled``: picks
    cut down to fit the daily budget; ``wagered``: amount submitted and not rejected,
    by hub UTC day; ``wagered_by_game``: the same by game_id.
    """

    validator_hotkey: str
    submitted: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    unconfirmed: int = 0
    errors: int = 0
    agent_errors: int = 0
    batches: int = 0
    scaled: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    wagered: dict[str, float] = field(default_factory=dict)
    wagered_by_game: dict[str, float] = field(default_factory=dict)

    def add_wager(self, day: str, game_id: str, amount: float) -> None:
        self.wagered[day] = self.wagered.get(day, 0.0) + amount
        self.wagered_by_game[game_id] = self.wagered_by_game.get(game_id, 0.0) + amount

    def remove_wager(self, day: str, game_id: str, amount: float) -> None:
        self.add_wager(day, game_id, -amount)
        if abs(self.wagered_by_game[game_id]) < 1e-9:
            del self.wagered_by_game[game_id]

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def row(self) -> dict[str, Any]:
        """One flat row for a table (rejections as ``code=count`` text)."""
        return {
            "validator": self.validator_hotkey,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected_total,
            "rejected_by_code": ", ".join(f"{code}={count}"
                                          for code, count in sorted(self.rejected.items())),
            "unconfirmed": self.unconfirmed,
            "skipped": sum(self.skipped.values()),
            "agent_errors": self.agent_errors,
            "wagered": round(sum(self.wagered.values()), 6),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "validator_hotkey": self.validator_hotkey,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": dict(self.rejected),
            "unconfirmed": self.unconfirmed,
            "errors": self.errors,
            "agent_errors": self.agent_errors,
            "batches": self.batches,
            "scaled": self.scaled,
            "skipped": dict(self.skipped),
            "wagered": dict(self.wagered),
            "wagered_by_game": dict(self.wagered_by_game),
        }


@dataclass
class RunnerStats:
    """Per-validator :class:`ValidatorStats` plus totals across validators."""

    agent: str
    validators: dict[str, ValidatorStats] = field(default_factory=dict)

    def validator(self, hotkey: str) -> ValidatorStats:
        stats = self.validators.get(hotkey)
        if stats is None:
            stats = self.validators[hotkey] = ValidatorStats(hotkey)
        return stats

    def _sum(self, name: str) -> int:
        return sum(getattr(v, name) for v in self.validators.values())

    @property
    def submitted(self) -> int:
        return self._sum("submitted")

    @property
    def accepted(self) -> int:
        return self._sum("accepted")

    @property
    def duplicate(self) -> int:
        return self._sum("duplicate")

    @property
    def unconfirmed(self) -> int:
        return self._sum("unconfirmed")

    @property
    def agent_errors(self) -> int:
        return self._sum("agent_errors")

    @property
    def rejected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for v in self.validators.values():
            total.update(v.rejected)
        return total

    @property
    def skipped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for v in self.validators.values():
            total.update(v.skipped)
        return total

    def wagered(self, validator_hotkey: str, day: str) -> float:
        """Amount submitted (and not rejected) to a validator on a hub UTC day."""
        stats = self.validators.get(validator_hotkey)
        return stats.wagered.get(day, 0.0) if stats else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """One row per validator, ready for a table or ``pandas.DataFrame``."""
        return [self.validators[key].row() for key in sorted(self.validators)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": dict(self.rejected),
            "unconfirmed": self.unconfirmed,
            "agent_errors": self.agent_errors,
            "skipped": dict(self.skipped),
            "validators": {key: v.to_dict() for key, v in sorted(self.validators.items())},
        }
