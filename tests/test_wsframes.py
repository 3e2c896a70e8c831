"""server_stub.wsframes: the frames the hub builds once and writes to many sockets."""

from __future__ import annotations

import struct
import zlib

import pytest

from server_stub import wsframes

TRAILER = b"\x00\x00\xff\xff"


def parse(frame: bytes) -> tuple[int, bool, bytes]:
    """(opcode, rsv1, payload) of one final unmasked frame; asserts it is exactly one."""
    b0, b1 = frame[0], frame[1]
    assert b0 & 0x80, "FIN must be set"
    assert not b0 & 0x30, "RSV2/RSV3 must be clear"
    assert not b1 & 0x80, "a server frame is never masked"
    length, offset = b1 & 0x7F, 2
    if length == 126:
        (length,), offset = struct.unpack("!H", frame[2:4]), 4
    elif length == 127:
        (length,), offset = struct.unpack("!Q", frame[2:10]), 10
    payload = frame[offset:]
    assert len(payload) == length
    return b0 & 0x0F, bool(b0 & 0x40), payload


def inflate(data: bytes, wbits: int = 15, decompressor: zlib._Decompress | None = None) -> bytes:
    """What a permessage-deflate peer does: append the trailer, raw-inflate."""
    decompressor = decompressor or zlib.decompressobj(-wbits)
    return decompressor.decompress(data + TRAILER)


@pytest.mark.parametrize(("length", "header_len", "marker"), [
    (0, 2, 0), (125, 2, 125), (126, 4, 126), (65535, 4, 126), (65536, 10, 127),
])
def test_the_header_length_form_changes_at_126_and_65536_bytes(length, header_len, marker):
    header = wsframes.header(length)
    assert len(header) == header_len
    assert header[1] == marker
    payload = b"x" * length
    assert parse(wsframes.frame(payload)) == (wsframes.OP_TEXT, False, payload)


def test_a_compressed_frame_sets_rsv1_and_only_rsv1():
    frame = wsframes.frame(b"abc", compressed=True)
    assert frame[0] == 0x80 | 0x40 | 0x01
    assert parse(frame) == (1, True, b"abc")


@pytest.mark.parametrize("wbits", [9, 10, 12, 15])
def test_deflate_round_trips_through_zlib_without_its_trailer(wbits):
    text = ('{"type":"game_update","data":{"games":[' + ",".join(
        f'{{"game_id":"g{i}","team_a":"Alpha","team_b":"Beta"}}' for i in range(300)) + "]}}")
    data = wsframes.deflate(text.encode(), wbits)
    assert not data.endswith(TRAILER)
    assert len(data) < len(text) // 5
    assert inflate(data, wbits) == text.encode()


def test_deflated_messages_are_independent_of_each_other():
    """No context takeover: each message inflates alone, and in sequence through one
    decompressor (a peer that keeps its context) too."""
    messages = [b'{"seq":%d,"games":["same","same","same"]}' % i for i in range(5)]
    deflated = [wsframes.deflate(message, 15) for message in messages]
    assert [inflate(data) for data in reversed(deflated)] == list(reversed(messages))
    kept = zlib.decompressobj(-15)
    assert [inflate(data, decompressor=kept) for data in deflated] == messages


def test_deflate_refuses_a_window_zlib_cannot_use():
    with pytest.raises(ValueError, match=r"9\.\.15"):
        wsframes.deflate(b"x", 8)


def test_the_deflate_answer_always_names_server_no_context_takeover():
    assert wsframes.deflate_response(15) == "permessage-deflate; server_no_context_takeover"
    assert wsframes.deflate_response(10) == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
    with pytest.raises(ValueError, match=r"9\.\.15"):
        wsframes.deflate_response(16)


def test_a_shared_frame_is_built_once_per_window():
    shared = wsframes.SharedFrame('{"type":"heartbeat","data":{"time_ns":1}}')
    assert shared.for_window(0) is shared.plain
    assert parse(shared.plain) == (1, False, shared.payload)
    first = shared.for_window(15)
    assert shared.for_window(15) is first
    opcode, rsv1, payload = parse(first)
    assert (opcode, rsv1) == (1, True)
    assert inflate(payload) == shared.payload
    assert inflate(parse(shared.for_window(10))[2], 10) == shared.payload
