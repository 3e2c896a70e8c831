"""The ways a :class:`~sdk.ValidatorConnection` reaches its hub: a WebSocket session,
or the HTTP fallback, both behind :class:`Transport`."""

from .base import (
    HubAddress,
    Inbound,
    LinkContext,
    Pacer,
    Transport,
    close_quietly,
    tls_connector,
)
from .http import HttpFallbackTransport
from .websocket import WebSocketTransport

__all__ = [
    "HttpFallbackTransport",
    "HubAddress",
    "Inbound",
    "LinkContext",
    "Pacer",
    "Transport",
    "WebSocketTransport",
    "close_quietly",
    "tls_connector",
]
