"""The reconnect policy without sockets: every rule of when to retry, fall back to HTTP
or give up, fed the errors the connection would see, plus the options that build it
and a connection driven by a policy of the user's own."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from sdk import ConnectionOptions, ReconnectPolicy, ValidatorConnection
from sdk.backoff import Backoff
from sdk.codes import CloseCode, ErrorCode
from sdk.errors import (
    BettensorWSError,
    HubUnreachableError,
    LinkError,
    NotRegisteredError,
    close_error,
    handshake_error,
)
from sdk.reconnect import Decision, Fail, Fallback, Wait, refusal_detail

from .kit.keys import VALIDATOR, miner_key

BASE = 0.5
CAP = 1000.0


def policy(*, http_fallback: bool = True, fallback_after: int = 3,
           stable_session_s: float = 10.0) -> ReconnectPolicy:
    return ReconnectPolicy(Backoff(BASE, CAP), http_fallback=http_fallback,
                           fallback_after=fallback_after, stable_session_s=stable_session_s)


def refused(status: int, code: str | None = None, retry_after: float | None = None
            ) -> BettensorWSError:
    """The exception a refused upgrade turns into (as the WebSocket transport raises it)."""
    return handshake_error(status, {"error": code, "detail": f"HTTP {status}"}, retry_after)


def unreachable() -> HubUnreachableError:
    return HubUnreachableError("cannot connect: connection refused")


def failed_upgrade() -> LinkError:
    return LinkError("cannot connect: connection reset during the upgrade")


def assert_wait(decision: Decision, *, at_most: float, at_least: float = 0.0) -> float:
    assert isinstance(decision, Wait), decision
    assert at_least <= decision.delay <= at_most, decision.delay
    return decision.delay


# -- permanent errors -----------------------------------------------------------------------


def test_403_fails_at_once_with_the_error():
    error = refused(403, "not_registered")
    assert isinstance(error, NotRegisteredError)
    rules = policy()
    assert rules.connect_failed(error) == Fail(error)
    assert rules.failures == 0  # nothing to count: there is no next attempt


def test_401_wrong_receiver_fails_at_once_but_other_401s_are_retried():
    wrong = refused(401, ErrorCode.WRONG_RECEIVER)
    assert policy().connect_failed(wrong) == Fail(wrong)
    stale = refused(401, "stale_nonce")
    assert_wait(policy().connect_failed(stale), at_most=BASE)


@pytest.mark.parametrize("close_code", [CloseCode.REPLACED, CloseCode.DEREGISTERED])
def test_a_session_closed_for_good_fails(close_code):
    error = close_error(close_code, "bye")
    rules = policy()
    rules.session_opened()
    assert rules.session_ended(120.0, error) == Fail(error)


def test_a_probe_from_the_fallback_fails_only_on_a_permanent_error():
    rules = policy()
    assert rules.probe_failed(failed_upgrade()) == Fallback(retry_websocket=False)
    assert rules.probe_failed(refused(426)) == Fallback(retry_websocket=False)
    error = refused(403)
    assert rules.probe_failed(error) == Fail(error)


# -- which failures send to the HTTP fallback -------------------------------------------------


@pytest.mark.parametrize("status", [404, 405, 426])
def test_an_upgrade_refused_as_not_a_websocket_goes_to_the_fallback_at_once(status):
    # the refusal itself says "no WebSocket here": trying the WebSocket again first is waste
    assert policy().connect_failed(refused(status)) == Fallback(retry_websocket=False)


@pytest.mark.parametrize("status", [401, 429, 503])
def test_refusals_about_us_or_the_hubs_load_never_go_to_the_fallback(status):
    rules = policy(fallback_after=2)
    for attempt in range(1, 30):
        decision = rules.connect_failed(refused(status, "stale_nonce" if status == 401
                                                else None))
        assert isinstance(decision, Wait), (attempt, decision)
    assert rules.upgrade_failures == 29


def test_a_hub_that_refuses_tcp_is_waited_for_never_replaced_by_http():
    rules = policy(fallback_after=1)
    for _ in range(50):
        assert isinstance(rules.connect_failed(unreachable()), Wait)
    assert (rules.failures, rules.upgrade_failures) == (50, 0)


def test_failed_upgrades_in_a_row_go_to_the_fallback_after_fallback_after():
    rules = policy(fallback_after=3)
    assert isinstance(rules.connect_failed(failed_upgrade()), Wait)
    assert isinstance(rules.connect_failed(unreachable()), Wait)  # does not count
    assert isinstance(rules.connect_failed(failed_upgrade()), Wait)
    # the third failed upgrade: fall back, but try the WebSocket once more first
    assert rules.connect_failed(failed_upgrade()) == Fallback(retry_websocket=True)


def test_without_http_fallback_every_retryable_failure_waits():
    rules = policy(http_fallback=False, fallback_after=1)
    for error in (refused(426), refused(404), failed_upgrade(), failed_upgrade()):
        assert isinstance(rules.connect_failed(error), Wait)


def test_an_opened_session_resets_the_failures_towards_the_fallback():
    rules = policy(fallback_after=2)
    assert isinstance(rules.connect_failed(failed_upgrade()), Wait)
    rules.session_opened()
    assert (rules.failures, rules.upgrade_failures) == (0, 0)
    assert isinstance(rules.connect_failed(failed_upgrade()), Wait)
    assert isinstance(rules.connect_failed(failed_upgrade()), Fallback)


# -- delays ---------------------------------------------------------------------------------


def test_failures_in_a_row_grow_the_delay_within_the_exponential_ceiling():
    rules = policy()
    delays = [assert_wait(rules.connect_failed(unreachable()), at_most=BASE * 2 ** n)
              for n in range(12)]
    # full jitter draws below the ceiling; later draws all staying under the first
    # ceiling would mean the delay does not grow (chance about 2**-50)
    assert max(delays[7:]) > BASE


def test_retry_after_is_a_floor_for_the_next_delay():
    assert_wait(policy().connect_failed(refused(429, retry_after=5.0)),
                at_least=5.0, at_most=10.0)
    rules = policy()
    assert isinstance(rules.connect_failed(refused(426, retry_after=7.0)), Fallback)
    # plain HTTP does not work either: wait as long as the refusal asked
    assert_wait(rules.fallback_unavailable(), at_least=7.0, at_most=14.0)


def test_flaps_grow_the_delay_and_a_stable_session_resets_it():
    rules = policy(stable_session_s=10.0)
    delays = []
    for n in range(12):
        rules.session_opened()
        delays.append(assert_wait(rules.session_ended(0.2, close_error(1006)),
                                  at_most=BASE * 2 ** n))
    assert rules.flaps == 12
    assert max(delays[7:]) > BASE
    rules.session_opened()
    assert_wait(rules.session_ended(60.0, close_error(1001)), at_most=BASE)
    assert rules.flaps == 1


def test_a_silent_link_counts_as_a_retryable_end():
    rules = policy()
    rules.session_opened()
    assert_wait(rules.session_ended(30.0, None), at_most=BASE)


def test_refusal_detail_says_what_to_fix():
    text = refusal_detail(401, ErrorCode.WRONG_RECEIVER, validator_hotkey="5Val",
                          url="ws://hub/ws", miner_hotkey="5Min")
    assert "check validator_hotkey" in text
    assert "5Val" in text
    assert "5Min" in text
    assert "HTTP 401 (wrong_receiver)" in text
    assert "not registered" in refusal_detail(403, None, validator_hotkey="v", url="u",
                                              miner_hotkey="m")


# -- options ----------------------------------------------------------------------------------


def test_options_build_the_default_policy():
    options = ConnectionOptions(backoff_base=0.1, backoff_cap=2.0, http_fallback=False,
                                fallback_after=5)
    rules = ReconnectPolicy.from_options(options)
    assert (rules.backoff.base, rules.backoff.cap) == (0.1, 2.0)
    assert (rules.http_fallback, rules.fallback_after) == (False, 5)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("fallback_after", 0, "fallback_after must be >= 1"),
    ("backoff_base", 0.0, "backoff_base must be positive"),
    ("handshake_timeout", -1.0, "handshake_timeout must be positive"),
    ("ready_timeout", 0.0, "ready_timeout must be positive or None"),
    ("heartbeat_interval_s", -0.5, "heartbeat_interval_s must be positive or None"),
    ("cutoff_margin_s", -1.0, "cutoff_margin_s must be >= 0"),
    ("update_buffer", 0, "update_buffer must be >= 1"),
])
def test_options_are_checked_when_built(field, value, match):
    with pytest.raises(ValueError, match=match):
        ConnectionOptions(**{field: value})


def test_options_are_frozen_and_derived_with_replace():
    options = ConnectionOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.fallback_after = 9  # type: ignore[misc]
    faster = dataclasses.replace(options, backoff_base=0.01)
    assert (faster.backoff_base, options.backoff_base) == (0.01, 0.5)
    assert faster.cutoff_margin.total_seconds() == faster.cutoff_margin_s


# -- a policy of one's own --------------------------------------------------------------------


class GiveUpWhenDown(ReconnectPolicy):
    """Stops at the first refused TCP connection instead of waiting for the hub."""

    made_with: list[ConnectionOptions] = []

    @classmethod
    def from_options(cls, options: ConnectionOptions) -> ReconnectPolicy:
        cls.made_with.append(options)
        return super().from_options(options)

    def connect_failed(self, error: BettensorWSError) -> Decision:
        if isinstance(error, HubUnreachableError):
            return Fail(error)
        return super().connect_failed(error)


async def test_a_connection_follows_the_policy_it_is_given():
    with socket.socket() as probe:  # a port nobody listens on: TCP is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ConnectionOptions(backoff_base=0.01, backoff_cap=0.02, handshake_timeout=2.0)
    conn = ValidatorConnection(f"ws://127.0.0.1:{port}", miner_key("Bob"),
                               VALIDATOR.ss58_address, outbox=":memory:", options=options,
                               policy=GiveUpWhenDown.from_options)
    await conn.start()
    try:
        with pytest.raises(HubUnreachableError, match="cannot connect"):
            await conn.wait_ready(10.0)
        assert GiveUpWhenDown.made_with == [options]
        assert conn.error is not None
        assert conn.reconnects == 0
    finally:
        await conn.close()
