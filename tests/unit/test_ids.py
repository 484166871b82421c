"""fsqueue.spool.IdMaker: fixed-width ids in one grammar, rising strictly, sorting by creation time."""

from __future__ import annotations

import time
import types
from itertools import pairwise

import pytest

from fsqueue import spool
from fsqueue.spool import ID_ALPHABET, JOB_ID_RE, IdMaker


def millis(job_id: str) -> int:
    """The creation time an id carries: its first 9 characters, base 32 in ID_ALPHABET."""
    value = 0
    for char in job_id[:9]:
        value = value * 32 + ID_ALPHABET.index(char)
    return value


def frozen_clock(monkeypatch: pytest.MonkeyPatch, *seconds: float) -> None:
    """Make IdMaker see these times, one per call, in order (IdMaker takes no clock argument)."""
    readings = iter(seconds)
    monkeypatch.setattr(spool, "time", types.SimpleNamespace(time=lambda: next(readings)))


def test_alphabet_is_crockford_lower_case_in_sort_order() -> None:
    assert ID_ALPHABET == "".join(sorted(ID_ALPHABET)) and len(set(ID_ALPHABET)) == 32
    assert not set("ilou") & set(ID_ALPHABET)


def test_ids_have_fixed_width_and_match_the_grammar() -> None:
    make = IdMaker()
    for job_id in (make() for _ in range(1000)):
        assert len(job_id) == 16 and JOB_ID_RE.match(job_id) and spool.is_job_id(job_id), job_id


def test_ids_rise_strictly_in_a_tight_loop() -> None:
    make = IdMaker()
    ids = [make() for _ in range(100_000)]
    assert all(a < b for a, b in pairwise(ids))
    # The loop must really have made many ids within one millisecond, or it proved nothing.
    assert sum(a[:9] == b[:9] for a, b in pairwise(ids)) > 50_000


def test_ids_rise_strictly_on_a_frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen_clock(monkeypatch, *[1_767_225_600.0] * 100_000)
    make = IdMaker()
    ids = [make() for _ in range(100_000)]
    assert all(a < b for a, b in pairwise(ids))
    assert {millis(job_id) for job_id in ids} == {1_767_225_600_000}


def test_ids_rise_even_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # NTP may step the wall clock back; ids from one maker must still rise.
    frozen_clock(monkeypatch, 1_767_225_600.5, 1_767_225_000.0, 1_767_225_600.5, 1_767_225_599.0)
    make = IdMaker()
    ids = [make() for _ in range(4)]
    assert all(a < b for a, b in pairwise(ids))


def test_id_carries_its_creation_time() -> None:
    before = int(time.time() * 1000)
    job_id = IdMaker()()
    after = int(time.time() * 1000)
    assert before <= millis(job_id) <= after


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param([0.031, 0.032, 1.0, 1.024], id="base32-digit-carries"),
        pytest.param([1_767_225_600.000, 1_767_225_600.001, 1_767_225_600.002], id="consecutive-ms"),
        pytest.param([1_000_000_000.0, 1_767_225_600.0, 4_102_444_800.0, 32_503_680_000.0], id="2001-to-3000"),
    ],
)
def test_ids_from_separate_makers_sort_by_time(monkeypatch: pytest.MonkeyPatch, seconds: list[float]) -> None:
    # Each id from a fresh maker, as from separate `fsq submit` processes: only the clock orders them.
    frozen_clock(monkeypatch, *seconds)
    ids = [IdMaker()() for _ in seconds]
    assert sorted(ids) == ids
    assert [millis(job_id) for job_id in ids] == [round(s * 1000) for s in seconds]
