"""bettensor-ws client SDK: the wire contract (bt-ws/1) and the miner-side client.

The wire contract lives here once; the validator hub (``server_stub``) imports it.
"""

from .backoff import Backoff
from .codes import PROTOCOL_VERSION, CloseCode, ConfirmationStatus, ErrorCode
from .connection import ConnectionState, ValidatorConnection
from .errors import (
    AuthenticationError,
    BettensorWSError,
    CanonicalizationError,
    CertificateError,
    ConnectionClosedError,
    DeregisteredError,
    HandshakeError,
    HubUnreachableError,
    LinkError,
    NotRegisteredError,
    PredictionRejected,
    ProtocolError,
    RateLimitedError,
    ReceiptError,
    ReplacedError,
    ServiceUnavailableError,
    SigningError,
)
from .frames import (
    Confirmation,
    ErrorFrame,
    Frame,
    GameUpdate,
    Heartbeat,
    Limits,
    PredictionFrame,
    Subscribe,
    Welcome,
    encode_frame,
    parse_frame,
)
from .models import Game, Outcome, Prediction
from .options import ConnectionOptions
from .outbox import Outbox, OutboxEntry
from .reconnect import ReconnectPolicy
from .results import DayResults, results_by_day
from .settlement import payout
from .signing import (
    canonical_bytes,
    sign_prediction,
    sign_receipt,
    verify_prediction,
    verify_receipt,
)
from .validation import Rejection, Rules, check_prediction

__all__ = [
    "PROTOCOL_VERSION",
    "AuthenticationError",
    "Backoff",
    "BettensorWSError",
    "CanonicalizationError",
    "CertificateError",
    "CloseCode",
    "Confirmation",
    "ConfirmationStatus",
    "ConnectionClosedError",
    "ConnectionOptions",
    "ConnectionState",
    "DayResults",
    "DeregisteredError",
    "ErrorCode",
    "ErrorFrame",
    "Frame",
    "Game",
    "GameUpdate",
    "HandshakeError",
    "Heartbeat",
    "HubUnreachableError",
    "Limits",
    "LinkError",
    "NotRegisteredError",
    "Outbox",
    "OutboxEntry",
    "Outcome",
    "Prediction",
    "PredictionFrame",
    "PredictionRejected",
    "ProtocolError",
    "RateLimitedError",
    "ReceiptError",
    "ReconnectPolicy",
    "Rejection",
    "ReplacedError",
    "Rules",
    "ServiceUnavailableError",
    "SigningError",
    "Subscribe",
    "ValidatorConnection",
    "Welcome",
    "canonical_bytes",
    "check_prediction",
    "encode_frame",
    "parse_frame",
    "payout",
    "results_by_day",
    "sign_prediction",
    "sign_receipt",
    "verify_prediction",
    "verify_receipt",
]
