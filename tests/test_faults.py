"""The fault knobs' grammar and bounds: `parse_faults` on query strings, no sockets."""

from __future__ import annotations

import pytest

from echo_server import defaults
from echo_server.app.faults import NO_FAULTS, Faults, fragment_size, parse_faults
from echo_server.protocol.http import HttpError


def refusal(query: str) -> str:
    with pytest.raises(HttpError) as refused:
        parse_faults(query)
    assert refused.value.status == 400
    return refused.value.message


def test_no_knob_is_no_fault_and_other_parameters_are_ignored() -> None:
    assert parse_faults("") is NO_FAULTS
    assert parse_faults("room=1&token=abc") is NO_FAULTS


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("delay=250", Faults(delay_s=0.25)),
        ("close=4000", Faults(close=(4000, ""))),
        ("close=4000:going%20away&after=3", Faults(close=(4000, "going away"), after=3)),
        ("drop", Faults(drop=True)),
        ("drop&after=2", Faults(drop=True, after=2)),
        ("fragment=16", Faults(fragment_bytes=16)),
        ("repeat=3", Faults(repeat=3)),
        ("ping=0.5", Faults(ping_s=0.5)),
        ("push=1024&every=100", Faults(push_bytes=1024, push_every_s=0.1)),
        ("delay=10&repeat=2&fragment=4", Faults(delay_s=0.01, repeat=2, fragment_bytes=4)),
    ],
)
def test_each_knob_is_read(query: str, expected: Faults) -> None:
    assert parse_faults(query) == expected


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("delay=abc", "delay='abc' is not a whole number"),
        ("delay=-1", "delay='-1' is not a whole number"),
        (f"delay={defaults.FAULT_MAX_DELAY_MS + 1}", "not within 0 to 10000"),
        ("close=999", "close='999' is not a close code"),
        ("close=1005", "close='1005' is not a close code"),
        ("close=4000:" + "x" * 124, "close reason is over 123 bytes"),
        ("after=3", "after=N goes with close=CODE or drop"),
        ("close=4000&drop", "cannot both end the connection"),
        ("drop=yes", "drop takes no value"),
        ("fragment=0", "fragment=0 is not within"),
        (f"repeat={defaults.FAULT_MAX_REPEAT + 1}", "repeat=17 is not within"),
        ("ping=0.01", "ping=0.01 is not within"),
        ("ping=nan", "ping=nan is not within"),
        ("push=100", "push=BYTES and every=MS go together"),
        ("push=100&every=1", "every=1 is not within"),
        (f"push={defaults.FAULT_MAX_PUSH_BYTES + 1}&every=100", "push=65537 is not within"),
        ("delay=1&delay=2", "delay is given more than once"),
        ("delay=" + "9" * 50, "is not a whole number"),
    ],
)
def test_a_bad_knob_is_a_400_that_says_what_is_wrong(query: str, says: str) -> None:
    message = refusal(query)
    assert says in message
    assert "Knobs: delay, close" in message


def test_fragments_are_the_knobs_size_until_a_message_would_make_too_many() -> None:
    faults = Faults(fragment_bytes=16)
    assert fragment_size(faults, 1000) == 16
    many = 16 * defaults.FAULT_MAX_FRAGMENTS * 4
    assert fragment_size(faults, many) == many // defaults.FAULT_MAX_FRAGMENTS
    assert fragment_size(NO_FAULTS, 1000) == 0
