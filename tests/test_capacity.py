"""How many workers are enough: the replay and the M/G/c estimate against an M/M/c workload
(Poisson arrivals, exponential run times), where Erlang C is exact.

No database: the frames are built as ``q.history()`` builds them (its columns and dtypes).
"""

from __future__ import annotations

import heapq
import math
import time

import numpy as np
import pandas as pd
import pytest

import mjq_notebook.analysis.history  # noqa: F401  (registers df.mjq)
from mjq_notebook.analysis.capacity import (
    ASSUMPTIONS,
    Capacity,
    erlang_c,
    mgc_wait,
    replay_waits,
)
from mjq_notebook.analysis.history import COLUMNS, DTYPES

T0 = pd.Timestamp("2026-03-01 12:00", tz="UTC")
RATE, SERVICE = 8.0, 1.0  # λ = 8 jobs/s, mean run 1 s: a = 8 erlangs
WORKERS = 11  # the real workers that "ran" the generated history
JOBS = 100_000


def history_frame(
    arrivals: np.ndarray, runs: np.ndarray, workers: int, attempts: np.ndarray | None = None
) -> pd.DataFrame:
    """The frame ``q.history()`` would give for jobs created at ``arrivals`` (s after T0) and
    run for ``runs`` s by ``workers`` FIFO workers (times at BSON's millisecond precision)."""
    attempts = np.ones(len(arrivals), int) if attempts is None else attempts
    waits = replay_waits(arrivals, runs * attempts, workers)
    created = T0 + pd.to_timedelta(arrivals, unit="s")
    started = created + pd.to_timedelta(waits + runs * (attempts - 1), unit="s")
    done = started + pd.to_timedelta(runs, unit="s")
    frame = pd.DataFrame(
        {
            "id": [f"job{i}" for i in range(len(arrivals))],
            "status": "done",
            "created": created,
            "started": started,
            "done": done,
            "attempts": attempts,
            "priority": 0,
            "worker": "w",
            "error_type": None,
            "error_message": None,
            "error_group": None,
        }
    )
    for name in ("created", "started", "done"):
        frame[name] = frame[name].dt.floor("ms").astype(DTYPES[name])
    frame["wait_s"] = (frame["started"] - frame["created"]).dt.total_seconds()
    frame["run_s"] = (frame["done"] - frame["started"]).dt.total_seconds()
    frame["total_s"] = (frame["done"] - frame["created"]).dt.total_seconds()
    return frame[COLUMNS].astype(DTYPES)


@pytest.fixture(scope="module")
def mmc() -> pd.DataFrame:
    rng = np.random.default_rng(20260301)
    arrivals = np.cumsum(rng.exponential(1 / RATE, JOBS))
    return history_frame(arrivals, rng.exponential(SERVICE, JOBS), WORKERS)


def closed_form_percentile(c: int, rate: float, mu: float, p: float) -> float:
    """The t with P(W > t) = C(c, a) · exp(-(cμ - λ) t) = 1 - p (0 if C <= 1 - p)."""
    chance = textbook_erlang_c(c, rate / mu)
    return max(0.0, math.log(chance / (1 - p)) / (c * mu - rate))


def textbook_erlang_c(c: int, a: float) -> float:
    """Erlang C as printed: (a^c/c! · c/(c-a)) / (Σ_{k<c} a^k/k! + a^c/c! · c/(c-a))."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def test_erlang_c_is_the_textbook_formula():
    for c, a in [(1, 0.5), (2, 1.5), (5, 4.0), (11, 8.0), (30, 25.0), (60, 41.3)]:
        assert erlang_c(c, a) == pytest.approx(textbook_erlang_c(c, a), rel=1e-12)
    assert erlang_c(3, 3.0) == erlang_c(3, 4.5) == 1.0  # saturated: every job waits
    assert erlang_c(3, 0.0) == 0.0
    assert erlang_c(500, 450.0) < 1  # the recursion stays finite where factorials overflow


def test_mmc_column_is_erlang_c_closed_form(mmc):
    """The table's M/M/c percentile, at the rates the function measured, is the t where
    C(c, a) · exp(-(cμ - λ) t) = 1 - p; M/G/c is it times (ca² + cs²) / 2."""
    result = mmc.mjq.capacity(0.5, percentile=0.9)
    rate, mu = result.arrival_rate, 1 / result.service_mean
    assert rate == pytest.approx(RATE, rel=0.02) and mu == pytest.approx(1 / SERVICE, rel=0.02)
    assert result.ca2 == pytest.approx(1, abs=0.05) and result.cs2 == pytest.approx(1, abs=0.05)
    stable = result.table[result.table["utilization"] < 1]
    # a = 8 (measured a shade either side): from 9 workers, or 8, the queue keeps up
    assert {9, 10, 11} <= set(stable.index) <= {8, 9, 10, 11}
    for c, row in stable.iterrows():
        t = row["mmc"]
        assert t == pytest.approx(closed_form_percentile(c, rate, mu, 0.9), rel=1e-9)
        assert erlang_c(c, rate / mu) * math.exp(-(c * mu - rate) * t) == pytest.approx(0.1)
        assert row["p_wait"] == pytest.approx(textbook_erlang_c(c, rate / mu), rel=1e-9)
        assert row["mgc"] == pytest.approx(t * (result.ca2 + result.cs2) / 2, rel=1e-9)
    assert np.isinf(result.table.loc[1:7, "mmc"]).all()  # λ >= cμ: no steady state


def test_replay_agrees_with_erlang_c_on_mmc(mmc):
    """With the true rates, Erlang C is exact for this workload: the replay's percentile
    waits and its share of jobs that waited at all match it."""
    result = mmc.mjq.capacity(0.05, percentile=0.9, max_workers=13)
    arrivals = (mmc["created"] - T0).dt.total_seconds().to_numpy()
    runs = mmc["run_s"].to_numpy()
    for c in (9, 10, 11, 12):
        exact = closed_form_percentile(c, RATE, 1 / SERVICE, 0.9)
        assert result.table.loc[c, "replay"] == pytest.approx(exact, rel=0.12, abs=0.02), c
        waited = (replay_waits(arrivals, runs, c) > 0).mean()
        assert waited == pytest.approx(erlang_c(c, RATE * SERVICE), abs=0.03), c
    assert result.table.loc[13, "replay"] == 0.0  # C(13, 8) < 0.1: p90 waits nothing


def test_the_answer_is_the_fewest_workers_that_meet_the_target(mmc):
    result = mmc.mjq.capacity(0.5, percentile=0.9)
    assert isinstance(result, Capacity)
    # the closed form: 10 workers -> 0.70 s, 11 -> 0.30 s
    assert result.workers == result.estimate == 11
    assert result.table.loc[10, "replay"] > 0.5 >= result.table.loc[11, "replay"]
    assert (result.table.loc[:10, "replay"] > 0.5).all()
    assert list(result.table.index) == list(range(1, 12))  # 1, 2, ... until it is met
    assert result.measured == pytest.approx(result.table.loc[WORKERS, "replay"], abs=0.002)
    assert mmc.mjq.capacity(0.2).workers == 12  # a tighter target needs more
    assert mmc.mjq.capacity(0.5, percentile=0.99).workers > 11  # and so does a higher p
    missed = mmc.mjq.capacity(0.5, max_workers=5)
    assert missed.workers is None and missed.estimate is None and len(missed.table) == 5
    assert "no number of workers up to 5" in repr(missed)


def test_the_table_reaches_the_real_number_of_workers(mmc):
    result = mmc.mjq.capacity(3.0, workers=14)  # met at 9, shown up to 14
    assert result.workers == 9 and result.table.index.max() == 14
    assert result.measured_workers == 14


def test_allen_cunneen_scales_the_wait_by_the_variability():
    """Constant run times (cs² = 0) with Poisson arrivals: M/G/c is half of M/M/c, and the
    replay, which knows the run times are constant, waits far less than M/M/c says."""
    rng = np.random.default_rng(7)
    arrivals = np.cumsum(rng.exponential(1 / RATE, 50_000))
    frame = history_frame(arrivals, np.full(len(arrivals), SERVICE), 10)
    result = frame.mjq.capacity(0.5)
    assert result.cs2 == pytest.approx(0, abs=1e-6)
    row = result.table.loc[10]
    assert row["mgc"] == pytest.approx(row["mmc"] * (result.ca2 + result.cs2) / 2)
    assert row["replay"] == pytest.approx(row["mgc"], rel=0.25)  # an approximation
    assert row["replay"] < 0.75 * row["mmc"]
    assert mgc_wait(0.9, 10, RATE, SERVICE, variability=2.0) == pytest.approx(
        2 * mgc_wait(0.9, 10, RATE, SERVICE)
    )


def test_retried_jobs_take_a_worker_once_per_attempt():
    arrivals = np.arange(100) * 1.0
    frame = history_frame(arrivals, np.full(100, 0.25), 1, attempts=np.full(100, 2))
    result = frame.mjq.capacity(0.1)
    assert result.service_mean == pytest.approx(0.5, abs=0.002)
    assert frame.mjq.capacity(0.1, overhead=0.05).service_mean == pytest.approx(0.6, abs=0.002)


def test_a_fitted_overhead_reproduces_the_measured_wait():
    """Workers that spend 50 ms per job beyond run_s (the claim, the writes): fitted with the
    real number of workers, the overhead comes back, and the replay then gives the measured
    percentile."""
    rng = np.random.default_rng(3)
    arrivals = np.cumsum(rng.exponential(1 / 20, 20_000))
    runs = rng.exponential(0.1, len(arrivals))
    waits = replay_waits(arrivals, runs + 0.05, 4)
    frame = history_frame(arrivals, runs, 4)
    started = frame["created"] + pd.to_timedelta(waits, unit="s")
    frame["started"] = started.dt.floor("ms")
    frame["done"] = (frame["started"] + pd.to_timedelta(runs, unit="s")).dt.floor("ms")
    frame["wait_s"] = (frame["started"] - frame["created"]).dt.total_seconds()
    frame["run_s"] = (frame["done"] - frame["started"]).dt.total_seconds()
    result = frame.mjq.capacity(0.05, overhead="fit", workers=4)
    assert result.overhead == pytest.approx(0.05, abs=0.01)
    assert result.table.loc[4, "replay"] == pytest.approx(result.measured, rel=0.01)
    assert result.table.loc[4, "replay"] > frame.mjq.capacity(0.05).table.loc[4, "replay"]


def test_replay_is_a_fifo_multi_server_queue():
    """The vectorised one-worker case and the heap agree with a plain simulation."""
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        arrivals = np.sort(rng.uniform(0, 10, n))
        service = rng.exponential(0.5, n)
        for workers in (1, 2, 3, 7):
            expected = naive_fifo(arrivals, service, workers)
            np.testing.assert_allclose(replay_waits(arrivals, service, workers), expected,
                                       atol=1e-9)  # fmt: skip


def naive_fifo(arrivals, service, workers):
    free = [0.0] * workers
    waits = []
    for arrived, busy in zip(arrivals, service, strict=True):
        earliest = heapq.heappop(free)
        start = max(arrived, earliest)
        waits.append(start - arrived)
        heapq.heappush(free, start + busy)
    return waits


def test_fast_on_100k_jobs(mmc):
    started = time.perf_counter()
    mmc.mjq.capacity(0.5, workers=WORKERS, overhead="fit")
    assert time.perf_counter() - started < 10


def test_reprs_state_the_answer_and_the_assumptions(mmc):
    result = mmc.mjq.capacity(0.5)
    text = repr(result)
    assert text.startswith("11 workers kept the p90 wait under 500 ms in the replay")
    assert "M/G/c estimate: 11" in text and "FIFO" in text
    assert all(assumption in text for assumption in ASSUMPTIONS)
    page = result._repr_html_()
    assert '<div class="mjq">' in page and "<table" in page and "Assumptions" in page
    assert "FIFO" in page and "M/G/c p90" in page and "∞" in page
    assert ">0.00<" not in page and "nan" not in page.lower()
    assert mmc.mjq.capacity(0.5, percentile=0.999).label == "p99.9"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": 0}, "target"),
        ({"target": -1.0}, "target"),
        ({"target": math.nan}, "target"),
        ({"target": "fast"}, "target"),
        ({"percentile": 0}, "percentile"),
        ({"percentile": 1}, "percentile"),
        ({"percentile": 90}, "percentile"),
        ({"overhead": -0.1}, "overhead"),
        ({"overhead": "fit"}, "workers="),
        ({"workers": 0}, "workers"),
        ({"max_workers": 0}, "max_workers"),
    ],
)
def test_bad_input_says_what_is_wrong(mmc, change, message):
    arguments = {"target": 0.5, **change}
    with pytest.raises(ValueError, match=message):
        mmc.head(100).mjq.capacity(**arguments)


def test_a_frame_without_finished_jobs_is_refused(mmc):
    with pytest.raises(ValueError, match="no finished jobs"):
        mmc.iloc[:0].mjq.capacity(0.5)
    waiting = mmc.head(10).assign(started=pd.NaT, done=pd.NaT, wait_s=np.nan, run_s=np.nan)
    with pytest.raises(ValueError, match="no finished jobs"):
        waiting.mjq.capacity(0.5)
