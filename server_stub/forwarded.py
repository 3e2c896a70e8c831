"""The client's address behind a reverse proxy: a pure function of the TCP peer, the
request's ``Forwarded`` / ``X-Forwarded-For`` headers and the trusted proxy networks.

Why this exists: behind nginx every miner's TCP peer is the proxy, so a per-address
limit keyed by the peer throttles the whole subnet as one client. The headers are
believed only when the peer is a trusted proxy (anyone else could write them), and only
as far as the chain of trusted proxies goes: walking the list from the right, the first
address that is not a trusted proxy is the client. Entries left of it were written by
the client itself and are never read. Anything malformed on the way gives the peer
address back: a broken header costs the sender its own bucket, never a crash.

``Forwarded`` (RFC 7239) wins when both headers are present; its ``for=`` values may be
quoted, carry a port (``"192.0.2.7:4711"``) or be a bracketed IPv6 address
(``"[2001:db8::1]:4711"``). ``X-Forwarded-For`` entries may carry a port too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TypeAlias

__all__ = ["IPNetwork", "client_address", "forwarded_for", "parse_node"]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOPS = 64
"""Entries read from the right at most: a longer chain is treated as malformed."""


def client_address(peer: str | None, *, forwarded: Sequence[str], x_forwarded_for: Sequence[str],
                   trusted: Sequence[IPNetwork]) -> str:
    """The address to count a request against.

    ``forwarded`` and ``x_forwarded_for`` are every value of that header, in the order
    received (a header may repeat). Returns the peer (``"?"`` when unknown) unless the
    peer is inside ``trusted``."""
    fallback = peer or "?"
    peer_ip = parse_node(peer or "")
    if peer_ip is None or not trusted or not _inside(peer_ip, trusted):
        return fallback
    if forwarded:
        chain = forwarded_for(forwarded)
    elif x_forwarded_for:
        chain = [part.strip() for value in x_forwarded_for for part in value.split(",")]
    else:
        return fallback
    if chain is None or not chain or len(chain) > MAX_HOPS:
        return fallback
    found: IPAddress | None = None
    for node in reversed(chain):
        found = parse_node(node)
        if found is None:
            return fallback
        if not _inside(found, trusted):
            return str(found)
    # every hop is a trusted proxy: the leftmost is as close to the client as we know
    return str(found) if found is not None else fallback


def forwarded_for(values: Iterable[str]) -> list[str] | None:
    """The ``for=`` node of every element of RFC 7239 ``Forwarded`` header values, left
    to right, unquoted; None when the syntax is broken or an element has no ``for=``."""
    nodes: list[str] = []
    for value in values:
        elements = _split_elements(value)
        if elements is None:
            return None
        for pairs in elements:
            node = pairs.get("for")
            if node is None:
                return None
            nodes.append(node)
    return nodes


def parse_node(node: str) -> IPAddress | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1`` or ``[2001:db8::1]:80``;
    None for anything else (``unknown``, obfuscated ``_names``, garbage)."""
    node = node.strip()
    if node.startswith("["):
        end = node.find("]")
        if end < 0 or (node[end + 1:] and not _is_port(node[end + 1:])):
            return None
        try:
            return ipaddress.IPv6Address(node[1:end])
        except ValueError:
            return None
    if node.count(":") == 1:  # IPv4 with a port
        node, port = node.split(":")
        if not _is_port(":" + port):
            return None
    if "%" in node:  # a zone id names a local interface: meaningless from elsewhere
        return None
    try:
        return ipaddress.ip_address(node)
    except ValueError:
        return None


def _inside(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def _is_port(text: str) -> bool:
    return len(text) >= 2 and text[0] == ":" and text[1:].isascii() and text[1:].isdigit() \
        and len(text) <= 6


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _split_elements(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 ``forwarded-element *( "," forwarded-element )``, each a dict of its
    lower-cased parameter names; None on a syntax error or a repeated parameter."""
    elements: list[dict[str, str]] = []
    pairs: dict[str, str] = {}
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t":
            i += 1
        start = i
        while i < n and value[i] in _TCHAR:
            i += 1
        name = value[start:i].lower()
        if not name or i >= n or value[i] != "=":
            return None
        i += 1
        if i < n and value[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and value[i] != '"':
                if value[i] == "\\":
                    i += 1
                    if i >= n:
                        return None
                chars.append(value[i])
                i += 1
            if i >= n:
                return None  # unterminated quoted-string
            i += 1
            text = "".join(chars)
        else:
            start = i
            while i < n and value[i] in _TCHAR:
                i += 1
            text = value[start:i]
            if not text:
                return None
        if name in pairs:
            return None
        pairs[name] = text
        while i < n and value[i] in " \t":
            i += 1
        if i >= n:
            elements.append(pairs)
            return elements
        if value[i] == ";":
            i += 1
        elif value[i] == ",":
            elements.append(pairs)
            pairs = {}
            i += 1
        else:
            return None
