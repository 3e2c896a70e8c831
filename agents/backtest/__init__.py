"""Backtesting agents: recordings of a validator's stream (:mod:`.recording`)."""

from .recording import (
    RECORDING_FORMAT,
    RecordedUpdate,
    RecordingError,
    RecordingWriter,
    read_recording,
)

__all__ = ["RECORDING_FORMAT", "RecordedUpdate", "RecordingError", "RecordingWriter",
           "read_recording"]
