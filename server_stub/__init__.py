"""The bettensor-ws validator hub (aiohttp): admits miners, streams games, stores
predictions and signs receipts. The wire contract comes from :mod:`sdk`."""

from .app import create_app
from .clock import HubClock
from .config import HubConfig
from .feed import FeedError, GameSimulator, load_games_file
from .http_api import HUB_KEY
from .hub import Hub
from .registry import AllowListRegistry, MetagraphRegistry, OpenRegistry, metagraph_fetch
from .store import PredictionStore

__all__ = [
    "HUB_KEY",
    "AllowListRegistry",
    "FeedError",
    "GameSimulator",
    "Hub",
    "HubClock",
    "HubConfig",
    "MetagraphRegistry",
    "OpenRegistry",
    "PredictionStore",
    "create_app",
    "load_games_file",
    "metagraph_fetch",
]
