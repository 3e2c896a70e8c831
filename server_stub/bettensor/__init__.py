"""The hub beside a real Bettensor validator: games from, and accepted predictions
into, the validator's own SQLite database (``bt-validator-stub serve --bettensor-db``).
"""

from .book import BettensorBook
from .database import ValidatorDatabase
from .feed import BettensorGameFeed
from .schema import VALIDATOR_SCHEMA, game_from_row, parse_db_time, prediction_date

__all__ = [
    "VALIDATOR_SCHEMA",
    "BettensorBook",
    "BettensorGameFeed",
    "ValidatorDatabase",
    "game_from_row",
    "parse_db_time",
    "prediction_date",
]
