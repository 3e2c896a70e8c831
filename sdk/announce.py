"""The hub URL a validator announces in its chain commitment: format and parse, no I/O.

A validator writes ``bt-ws=<url>`` as the plaintext of its commitment on the subnet
(bittensor ``Commitments.set_commitment``); a miner reading the metagraph connects to
that URL instead of ``ws://<axon ip:port>``. The commitment is signed by the
validator's hotkey on chain, so nobody else can announce a URL for it; the hub still
proves that hotkey in every receipt.

Format (PROTOCOL.md, "Discovery"): the commitment text is split on ASCII whitespace;
the first entry starting with ``bt-ws=`` is the announcement. Its URL must be
``ws://`` or ``wss://`` with a host, an optional port and path, and no user info,
query or fragment. The whole entry must fit in :data:`MAX_COMMITMENT_BYTES` (one
``Raw`` field of the Commitments pallet). Anything else is no announcement: the
miner falls back to the axon.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["MAX_COMMITMENT_BYTES", "PREFIX", "AnnounceError", "announced_url",
           "announcement", "check_hub_url"]

PREFIX = "bt-ws="
MAX_COMMITMENT_BYTES = 128
"""The largest ``Raw`` field of a commitment (``Raw0`` .. ``Raw128``): the announcement
is written as one field so that a reader never has to join fields."""


class AnnounceError(ValueError):
    """The URL cannot be announced; the message says why."""


def check_hub_url(url: str) -> str:
    """``url`` if it is a hub URL a miner can connect to (``ws://`` or ``wss://``, a
    host, optional port and path, no user info, query, fragment or whitespace) and
    ``bt-ws=<url>`` fits in a commitment; :class:`AnnounceError` otherwise."""
    if not url or any(ch.isspace() for ch in url) or not url.isprintable():
        raise AnnounceError(f"hub URL {url!r} is empty or contains whitespace or "
                            "control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AnnounceError(f"hub URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise AnnounceError(f"hub URL {url!r} must start with ws:// or wss://")
    if not parts.hostname:
        raise AnnounceError(f"hub URL {url!r} has no host")
    if "@" in parts.netloc:
        raise AnnounceError(f"hub URL {url!r} must not carry user info")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise AnnounceError(f"hub URL {url!r} must not carry a query or fragment")
    if port == 0:
        raise AnnounceError(f"hub URL {url!r} has port 0")
    size = len((PREFIX + url).encode())
    if size > MAX_COMMITMENT_BYTES:
        raise AnnounceError(f"hub URL {url!r} is too long: {PREFIX}<url> is {size} bytes, "
                            f"a commitment field holds {MAX_COMMITMENT_BYTES}")
    return url


def announcement(url: str) -> str:
    """The commitment text announcing ``url``: ``bt-ws=<url>`` (checked by
    :func:`check_hub_url`)."""
    return PREFIX + check_hub_url(url)


def announced_url(commitment: str | None) -> str | None:
    """The hub URL announced in a commitment's text, or None (no ``bt-ws=`` entry, or
    the first one is not a valid hub URL)."""
    if not commitment or not isinstance(commitment, str):
        return None
    for entry in commitment.split():
        if entry.startswith(PREFIX):
            try:
                return check_hub_url(entry[len(PREFIX):])
            except AnnounceError:
                return None
    return None
