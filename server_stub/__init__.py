"""The bettensor-ws validator hub (aiohttp): admits miners, streams games, stores
predictions and signs receipts. The wire contract comes from :mod:`sdk`.

A hub in this process for tests, notebooks and ``bt-miner --dev``:
:class:`server_stub.testing.LocalHub`."""

from .admission import Admission
from .app import create_app
from .clock import HubClock
from .config import HubConfig
from .feed import FeedError, GameFeed, StaticFeed, load_games_file
from .http_api import HUB_KEY
from .http_errors import error_response, parse_stream_query
from .hub import Hub
from .intake import PredictionIntake, PredictionOutcome
from .miner_ws import MinerWSHandler
from .pgstore import PostgresStore
from .registry import AllowListRegistry, MetagraphRegistry, OpenRegistry, metagraph_fetch
from .session_table import SessionTable
from .simulator import GameSimulator
from .store import HubStore, PredictionStore

__all__ = [
    "HUB_KEY",
    "Admission",
    "AllowListRegistry",
    "FeedError",
    "GameFeed",
    "GameSimulator",
    "Hub",
    "HubClock",
    "HubConfig",
    "HubStore",
    "MetagraphRegistry",
    "MinerWSHandler",
    "OpenRegistry",
    "PostgresStore",
    "PredictionIntake",
    "PredictionOutcome",
    "PredictionStore",
    "SessionTable",
    "StaticFeed",
    "create_app",
    "error_response",
    "load_games_file",
    "metagraph_fetch",
    "parse_stream_query",
]
