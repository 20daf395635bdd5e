"""Shared GIL switch-interval requests: the shortest applies, the program's value comes back."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from profilers import switching


@pytest.fixture(autouse=True)
def program_interval() -> Iterator[float]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(old)


def test_overlapping_requests_apply_the_shortest_and_restore_the_program_value() -> None:
    a = switching.push(0.0005)
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    b = switching.push(0.0002)
    assert sys.getswitchinterval() == pytest.approx(0.0002)
    switching.pop(b)  # back to the other request's value, not the program's
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    c = switching.push(0.001)  # longer than an active one: changes nothing
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    switching.pop(a)
    assert sys.getswitchinterval() == pytest.approx(0.001)
    switching.pop(c)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_requests_that_end_in_any_order_restore_the_program_value() -> None:
    a = switching.push(0.0002)
    b = switching.push(0.0005)
    switching.pop(a)
    switching.pop(b)
    switching.pop(b)  # twice: ignored
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_a_value_the_program_sets_meanwhile_wins() -> None:
    with switching.shorter_switch_interval(0.0002):
        sys.setswitchinterval(0.01)
        with switching.shorter_switch_interval(0.0001):
            assert sys.getswitchinterval() == pytest.approx(0.01)
    assert sys.getswitchinterval() == pytest.approx(0.01)


def test_never_longer_than_the_program_asked() -> None:
    sys.setswitchinterval(0.0001)
    with switching.shorter_switch_interval(0.0005):
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    assert sys.getswitchinterval() == pytest.approx(0.0001)
