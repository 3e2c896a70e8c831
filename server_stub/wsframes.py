"""Server-to-client WebSocket frames as bytes, built once and written to many
sockets. Pure logic, no I/O.

A server's frames are never masked (RFC 6455 §5.1), so the complete frame of one
``game_update`` (header + payload) is the same bytes for every miner of a filter
group: :class:`SharedFrame` builds it once and the hub writes it to each socket.

permessage-deflate (RFC 7692) is answered with ``server_no_context_takeover``
(:func:`deflate_response`): every message is then compressed on its own, so one
compressed payload also serves every miner (of the same negotiated window), and
the hub keeps no compressor per connection. :func:`deflate` compresses one
message: raw deflate, flushed with ``Z_FULL_FLUSH`` (no reference to anything
compressed before), the trailing ``00 00 ff ff`` removed (§7.2.1); the frame
then carries RSV1 (§6).
"""

from __future__ import annotations

import functools
import struct
import zlib

__all__ = [
    "OP_PING",
    "OP_TEXT",
    "SharedFrame",
    "deflate",
    "deflate_response",
    "frame",
    "header",
]

OP_TEXT = 0x1
OP_PING = 0x9
_FIN = 0x80
_RSV1 = 0x40
_TRAILER = b"\x00\x00\xff\xff"
_PACK_LEN1 = struct.Struct("!BB").pack
_PACK_LEN2 = struct.Struct("!BBH").pack
_PACK_LEN3 = struct.Struct("!BBQ").pack

# The level aiohttp itself uses: the hub's frames are small JSON, and a broadcast
# is compressed once for all miners, so speed matters more than the last percent.
_LEVEL = 1
# One compressor per window size for the whole process: Z_FULL_FLUSH after every
# message resets its history, so messages stay independent of each other.
_compressors: dict[int, zlib._Compress] = {}


def header(length: int, *, opcode: int = OP_TEXT, compressed: bool = False) -> bytes:
    """The header of one final, unmasked frame of ``length`` payload bytes."""
    first = _FIN | (_RSV1 if compressed else 0) | opcode
    if length < 126:
        return _PACK_LEN1(first, length)
    if length < 65536:
        return _PACK_LEN2(first, 126, length)
    return _PACK_LEN3(first, 127, length)


def frame(payload: bytes, *, opcode: int = OP_TEXT, compressed: bool = False) -> bytes:
    """One complete frame: header + ``payload`` (already compressed if ``compressed``)."""
    return header(len(payload), opcode=opcode, compressed=compressed) + payload


def deflate(payload: bytes, wbits: int) -> bytes:
    """``payload`` as one permessage-deflate message with no context takeover, for a
    peer whose server window is ``2**wbits`` (9..15)."""
    compressor = _compressors.get(wbits)
    if compressor is None:
        if not 9 <= wbits <= 15:
            raise ValueError(f"deflate window bits must be 9..15, not {wbits}")
        compressor = _compressors[wbits] = zlib.compressobj(_LEVEL, zlib.DEFLATED, -wbits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_FULL_FLUSH)
    return data[:-4] if data.endswith(_TRAILER) else data


@functools.cache  # one string per window size, not one per connection
def deflate_response(wbits: int) -> str:
    """The ``Sec-WebSocket-Extensions`` answer to an accepted permessage-deflate offer
    (``wbits``: the server window the offer allowed, 15 when it named none)."""
    if not 9 <= wbits <= 15:
        raise ValueError(f"deflate window bits must be 9..15, not {wbits}")
    params = ["permessage-deflate", "server_no_context_takeover"]
    if wbits < 15:
        params.append(f"server_max_window_bits={wbits}")
    return "; ".join(params)


class SharedFrame:
    """One text message as frames for many sockets: plain, and deflated per window
    size (built on first use; nearly every peer negotiates the same window)."""

    __slots__ = ("_deflated", "payload", "plain")

    def __init__(self, text: str) -> None:
        self.payload = text.encode()
        self.plain = frame(self.payload)
        self._deflated: dict[int, bytes] = {}

    def for_window(self, wbits: int) -> bytes:
        """The frame for a peer with deflate window ``wbits`` (0: no compression)."""
        if not wbits:
            return self.plain
        built = self._deflated.get(wbits)
        if built is None:
            built = self._deflated[wbits] = frame(deflate(self.payload, wbits), compressed=True)
        return built
