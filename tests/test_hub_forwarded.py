"""The client address behind a reverse proxy: ``server_stub.forwarded`` on hostile
headers, and a real hub with ``trusted_proxies`` limiting upgrades per forwarded
address (and ignoring the headers without it)."""

from __future__ import annotations

import ipaddress

import pytest
from typer.testing import CliRunner

from server_stub import HubConfig
from server_stub.cli import admission_limits, app
from server_stub.forwarded import client_address, forwarded_for, parse_node

from .kit.hostile import raw_http, signed_upgrade, throwaway_keys

pytestmark = pytest.mark.usefixtures("raw_sockets_aborted")

PROXY = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def resolve(peer: str | None, *, fwd: tuple[str, ...] = (), xff: tuple[str, ...] = (),
            trusted=tuple(PROXY)) -> str:
    return client_address(peer, forwarded=fwd, x_forwarded_for=xff, trusted=trusted)


@pytest.mark.parametrize(("xff", "expected"), [
    (("203.0.113.5",), "203.0.113.5"),
    (("203.0.113.5, 10.0.0.2",), "203.0.113.5"),  # through two proxies
    (("1.1.1.1, 203.0.113.5",), "203.0.113.5"),  # the client wrote 1.1.1.1 itself
    (("garbage, 203.0.113.5",), "203.0.113.5"),  # left of the client is never read
    (("1.1.1.1", "203.0.113.5"), "203.0.113.5"),  # a repeated header joins in order
    (("203.0.113.5:4711",), "203.0.113.5"),
    (("[2001:db8::7]:80",), "2001:db8::7"),
    (("2001:db8::7",), "2001:db8::7"),
    (("10.0.0.3, 10.0.0.2",), "10.0.0.3"),  # all trusted: the leftmost
])
def test_the_rightmost_untrusted_forwarded_for_address_is_the_client(xff, expected):
    assert resolve("10.0.0.1", xff=xff) == expected


@pytest.mark.parametrize("xff", [
    "", " ", ",", "not-an-ip", "203.0.113.5, garbage", "203.0.113.5, unknown",
    "203.0.113.5:99999999", "203.0.113.5:", "[2001:db8::7", "[2001:db8::7]x",
    "[203.0.113.5]", "fe80::1%eth0", "1.2.3.4.5", "\x00", "٣.٣.٣.٣", "1.2.3.4:٣",
    ",".join(["203.0.113.5"] * 65),
])
def test_a_malformed_x_forwarded_for_gives_the_peer(xff):
    assert resolve("10.0.0.1", xff=(xff,)) == "10.0.0.1"


@pytest.mark.parametrize(("fwd", "expected"), [
    (("for=203.0.113.5",), "203.0.113.5"),
    (("For=203.0.113.5;proto=https;by=10.0.0.1",), "203.0.113.5"),
    (('for="[2001:db8:cafe::17]:4711"',), "2001:db8:cafe::17"),
    (('for="203.0.113.5:4711"',), "203.0.113.5"),
    (("for=198.51.100.1, for=203.0.113.5",), "203.0.113.5"),
    (("for=198.51.100.1", "for=203.0.113.5;proto=http"), "203.0.113.5"),
    (('for=203.0.113.5, for="[fd00::1]"',), "203.0.113.5"),  # fd00::1 is a trusted proxy
    (('for="\\2\\03.0.113.5"',), "203.0.113.5"),  # quoted-pair escapes
    (("for=unknown, for=203.0.113.5",), "203.0.113.5"),  # never reached
])
def test_forwarded_for_is_read_per_rfc_7239(fwd, expected):
    assert resolve("10.0.0.1", fwd=fwd) == expected


@pytest.mark.parametrize("fwd", [
    "", "for", "for=", "for=203.0.113.5;", "for=203.0.113.5,", "=203.0.113.5",
    'for="203.0.113.5', 'for="203.0.113.5\\', "for=203.0.113.5;for=198.51.100.1",
    "proto=https", "for=203.0.113.5, proto=https", "for=unknown", "for=_hidden",
    "for=203.0.113.5 x", "for=[2001:db8::1]", 'for="[2001:db8::1"', "for=203.0.113.5;;a=b",
    'for="[2001:db8::1]:80x"', "for=\u00e9", "for=1.2.3.4\r\n", ", for=203.0.113.5",
])
def test_a_malformed_forwarded_gives_the_peer(fwd):
    assert resolve("10.0.0.1", fwd=(fwd,)) == "10.0.0.1"


def test_forwarded_wins_over_x_forwarded_for():
    assert resolve("10.0.0.1", fwd=("for=203.0.113.5",), xff=("198.51.100.1",)) == "203.0.113.5"


@pytest.mark.parametrize("peer", ["203.0.113.9", "10.0.0.1"])
def test_headers_from_an_untrusted_peer_or_without_trusted_proxies_are_ignored(peer):
    trusted = () if peer == "10.0.0.1" else tuple(PROXY)
    assert resolve(peer, xff=("198.51.100.1",), fwd=("for=198.51.100.1",),
                   trusted=trusted) == peer


def test_an_unknown_or_odd_peer_is_passed_through():
    assert resolve(None, xff=("198.51.100.1",)) == "?"
    assert resolve("unix-socket", xff=("198.51.100.1",)) == "unix-socket"
    assert resolve("10.0.0.1") == "10.0.0.1"  # a trusted proxy that sent no header


def test_ipv4_mapped_peers_and_ipv6_proxies_count_as_trusted():
    assert resolve("::ffff:10.0.0.1", xff=("198.51.100.1",)) == "198.51.100.1"
    assert resolve("fd00::5", xff=("2001:db8::9",)) == "2001:db8::9"


def test_parse_node_and_forwarded_for_building_blocks():
    assert parse_node(" 192.0.2.1:80 ") == ipaddress.ip_address("192.0.2.1")
    assert parse_node("_obf") is None
    assert forwarded_for(['for=a;by=b, for="c d"']) == ["a", "c d"]
    assert forwarded_for(["by=b"]) is None


async def _upgrade(port: int, key, forwarded_address: str) -> int:
    request = signed_upgrade(key, extra=[("X-Forwarded-For", forwarded_address)])
    return (await raw_http(port, request)).status


async def test_a_trusted_proxy_gets_limits_per_forwarded_address(start_hub):
    """Behind a trusted proxy on 127.0.0.1 with a per-address burst of 2 (refilling once a
    minute): a third upgrade for 198.51.100.1 is refused, one for 198.51.100.2 is not."""
    running = await start_hub(upgrades_per_second=1 / 60, upgrade_burst=2.0,
                              trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    port = running.server.port
    keys = throwaway_keys(4, seed=41)
    assert [await _upgrade(port, key, "198.51.100.1") for key in keys[:3]] == [101, 101, 429]
    assert await _upgrade(port, keys[3], "198.51.100.2") == 101


async def test_without_trusted_proxies_the_forwarded_header_is_ignored(start_hub):
    running = await start_hub(upgrades_per_second=1 / 60, upgrade_burst=2.0)
    port = running.server.port
    keys = throwaway_keys(3, seed=42)
    statuses = [await _upgrade(port, key, f"198.51.100.{i}") for i, key in enumerate(keys)]
    assert statuses == [101, 101, 429]  # three addresses in the header, one peer


@pytest.mark.parametrize(("flags", "reason"), [
    (["--connects-per-minute", "0"], "connects_per_minute"),
    (["--connect-burst", "0.5"], "connect_burst"),
    (["--upgrades-per-second", "-1"], "upgrades_per_second"),
    (["--upgrade-burst", "0"], "upgrade_burst"),
    (["--trusted-proxy", "nginx"], "--trusted-proxy nginx"),
    (["--trusted-proxy", "10.0.0.1/8"], "has host bits set"),
])
def test_serve_refuses_bad_admission_flags(tmp_path, flags, reason):
    result = CliRunner().invoke(app, ["serve", "--validator-uri", "//Alice", "--open",
                                      "--store", str(tmp_path / "hub.sqlite3"), *flags])
    assert result.exit_code == 2, result.output
    assert reason in result.output


def test_serve_passes_the_admission_flags_to_the_hub_config():
    fields = admission_limits(60.0, 5.0, 20.0, 400.0, ["127.0.0.1/32", "fd00::/8"])
    config = HubConfig(**fields)
    assert (config.connects_per_minute, config.connect_burst) == (60.0, 5.0)
    assert (config.upgrades_per_second, config.upgrade_burst) == (20.0, 400.0)
    assert config.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"),
                                      ipaddress.ip_network("fd00::/8"))
