"""Games on offer: one that starts in the future, and the body that posts a list of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sdk.models import Game


def future_game(game_id: str = "g1", *, sport: str = "soccer", league: str = "EPL",
                start_in: timedelta = timedelta(hours=2), **overrides: Any) -> Game:
    values: dict[str, Any] = dict(
        game_id=game_id, team_a=f"{game_id}-home", team_b=f"{game_id}-away", sport=sport,
        league=league, event_start_date=datetime.now(UTC) + start_in, team_a_odds=2.1,
        team_b_odds=3.4, tie_odds=3.3 if sport == "soccer" else None,
        can_tie=sport == "soccer")
    values.update(overrides)
    return Game(**values)


def games_body(games: list[Game]) -> bytes:
    return json.dumps({"games": [g.model_dump(mode="json") for g in games]}).encode()
