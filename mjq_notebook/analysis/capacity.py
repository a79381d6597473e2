"""How many workers would have been enough: a replay of a history frame, beside queueing theory.

``capacity(frame, target, percentile)`` answers "with these arrivals (``created``) and these
run times (``run_s``), how many workers would have kept the ``percentile`` wait under
``target`` seconds?" two ways, one row per number of workers *c*:

- the **replay**: the real arrival times and run times served first come, first served by
  *c* workers (a heap of the times each worker is next free), *c* = 1, 2, ... until the
  percentile is met. It keeps the workload's bursts, which is why it is the answer;
- the **M/G/c estimate**: Erlang C for M/M/c (Poisson arrivals, exponential run times, the
  formula exact there) with the Allen-Cunneen factor (ca² + cs²) / 2 for the variability of
  the real inter-arrival and run times. It sees only the average rate, so it is a check
  and a sense of scale, not the answer: bursts need more workers than the mean rate says.

Plain numpy and pandas on the frame's columns (see ``history.load``), like ``timing``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from ..text import format_seconds

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ASSUMPTIONS", "Capacity", "capacity", "erlang_c", "mgc_wait", "replay_waits"]

ASSUMPTIONS = (
    "FIFO: jobs start in order of creation; priorities, delays and retry back-offs ignored",
    "run times don't change with load: each job runs as long as it did (run_s; a retried "
    "job once per attempt, each as long as its last), plus the overhead per attempt",
    "workers are always available and run one job at a time: no start-up, crash or pause",
    "only finished jobs (done, failed) count: waiting, running and cancelled ones are left out",
    "M/G/c: a steady arrival rate (the mean over the frame); Allen-Cunneen scales Erlang C's "
    "waits by (ca² + cs²) / 2, exact only for Poisson arrivals and exponential run times",
)
COLUMNS = ["utilization", "p_wait", "mmc", "mgc", "replay"]
_FIT_STEPS = 40  # bisection steps for the overhead: 2**-40 of the bracket


@dataclass(frozen=True)
class Capacity:
    """What ``capacity`` found: the answer, the table per number of workers, the workload.

    ``workers`` is the fewest workers whose replay met the target (None: not even
    ``max_workers``); ``estimate`` the fewest by the M/G/c estimate. ``table`` has one row
    per number of workers: ``utilization`` (offered load per worker), ``p_wait`` (Erlang C's
    chance that a job waits), ``mmc``/``mgc`` (the percentile wait by M/M/c and by
    Allen-Cunneen's M/G/c, ∞ when the workers can't keep up) and ``replay`` (the replay's
    percentile wait), in seconds.
    """

    target: float
    percentile: float
    workers: int | None
    estimate: int | None
    table: pd.DataFrame
    jobs: int
    arrival_rate: float  # jobs per second, mean over the frame
    service_mean: float  # seconds of a worker per job (all attempts, overhead included)
    ca2: float  # squared coefficient of variation of the inter-arrival times
    cs2: float  # ... of the service times
    overhead: float  # seconds per attempt added to run_s (given, or fitted)
    measured: float  # the frame's own percentile wait (wait_s) over the same jobs
    measured_workers: int | None = None  # how many workers served the frame, when given
    assumptions: tuple[str, ...] = field(default=ASSUMPTIONS, repr=False)

    @property
    def label(self) -> str:
        """The percentile as people say it: "p90", "p99.9"."""
        return "p" + f"{self.percentile * 100:.10g}"

    def __repr__(self) -> str:
        lines = [self._answer(), self._workload(), ""]
        table = self.table.copy()
        for name in ("mmc", "mgc", "replay"):
            table[name] = [_seconds(value) for value in table[name]]
        table["utilization"] = [f"{value:.0%}" for value in table["utilization"]]
        table["p_wait"] = [f"{value:.3f}" for value in table["p_wait"]]
        lines += [table.to_string(), "", "Assumes:"]
        lines += [f"- {text}" for text in self.assumptions]
        return "\n".join(lines)

    def _answer(self) -> str:
        goal = f"{self.label} wait under {format_seconds(self.target)}"
        replay = (
            f"{self.workers} worker{'s' if self.workers != 1 else ''} kept the {goal} "
            f"in the replay ({_seconds(self.table.loc[self.workers, 'replay'])})"
            if self.workers is not None
            else f"no number of workers up to {self.table.index.max()} kept the {goal} "
            "in the replay"
        )
        estimate = "none in the table" if self.estimate is None else str(self.estimate)
        return f"{replay}; M/G/c estimate: {estimate}."

    def _workload(self) -> str:
        text = (
            f"{self.jobs:,} jobs, {self.arrival_rate:.3g} arrivals/s, "
            f"{format_seconds(self.service_mean)} of a worker each (ca² {self.ca2:.2f}, "
            f"cs² {self.cs2:.2f}), "
            + (
                f"overhead {format_seconds(self.overhead)} per attempt"
                if self.overhead
                else "no overhead"
            )
            + f"; measured {self.label} wait {_seconds(self.measured)}"
        )
        if self.measured_workers is not None:
            many = self.measured_workers
            text += f" with {many} worker{'s' if many != 1 else ''}"
        return text

    def _repr_html_(self) -> str:
        from ..notebook.display import STYLE, escape  # the layer above: on use only

        label = escape(self.label)
        heads = ["workers", "load/worker", "P(wait)", f"M/M/c {label}", f"M/G/c {label}"]
        head = "".join(f'<th class="mjq-n">{h}</th>' for h in [*heads, f"replay {label}"])
        rows = []
        for workers, row in self.table.iterrows():
            mark = ' style="font-weight:600"' if workers == self.workers else ""
            cells = [
                str(workers),
                f"{row['utilization']:.0%}",
                f"{row['p_wait']:.3f}",
                *(_seconds(row[name]) for name in ("mmc", "mgc", "replay")),
            ]
            tds = "".join(f'<td class="mjq-n">{escape(cell)}</td>' for cell in cells)
            rows.append(f"<tr{mark}>{tds}</tr>")
        notes = "".join(f"<li>{escape(text)}</li>" for text in self.assumptions)
        return (
            f'<div class="mjq">{STYLE}<div class="mjq-head"><b>{escape(self._answer())}</b>'
            f'</div><div class="mjq-dim">{escape(self._workload())}</div>'
            f'<table class="mjq-t"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
            f'<details><summary class="mjq-dim">Assumptions</summary><ul>{notes}</ul>'
            "</details></div>"
        )


def capacity(
    frame: pd.DataFrame,
    target: float | timedelta,
    percentile: float = 0.9,
    *,
    overhead: float | Literal["fit"] = 0.0,
    workers: int | None = None,
    max_workers: int = 64,
) -> Capacity:
    """How many workers would have kept the ``percentile`` wait of ``frame``'s jobs under
    ``target`` seconds: a first-come-first-served replay of their arrivals and run times with
    1, 2, ... workers, shown beside the M/G/c (Erlang C, Allen-Cunneen) estimate.

    A worker also spends time per job that ``run_s`` doesn't show (the claim, the writes):
    ``overhead`` adds that many seconds per attempt; ``"fit"`` finds the overhead with which
    the replay with ``workers`` (how many really served the frame) reproduces the measured
    percentile wait. The table runs from 1 worker to the most of ``workers``, the replay's
    answer and the estimate's, at most ``max_workers``. See ``ASSUMPTIONS`` (also in the
    result's repr): FIFO, run times independent of load, workers always there, priorities,
    delays and back-offs ignored.
    """
    import pandas as pd

    target_s, arrivals, run_tries, waits = _workload(frame, target, percentile, max_workers)
    if workers is not None and not (isinstance(workers, int) and 1 <= workers <= max_workers):
        raise ValueError(f"workers must be a whole number from 1 to max_workers ({max_workers})")
    if overhead == "fit":
        if workers is None:
            raise ValueError('overhead="fit" needs workers=: how many workers served the frame')
        overhead = fit_overhead(arrivals, run_tries, waits, workers, percentile)
    elif not (isinstance(overhead, (int, float)) and math.isfinite(overhead) and overhead >= 0):
        raise ValueError(f'overhead must be seconds >= 0 or "fit", not {overhead!r}')
    service = run_tries[0] + run_tries[1] * float(overhead)
    rate, mean, ca2, cs2 = _moments(arrivals, service)
    rows: list[dict[str, float]] = []
    answer = estimate = None
    c = 0
    while c < max_workers and (answer is None or estimate is None or c < (workers or 0)):
        c += 1
        row = _estimates(c, rate, mean, ca2, cs2, percentile)
        replay = _percentile(replay_waits(arrivals, service, c), percentile)
        rows.append({**row, "replay": replay})
        if answer is None and replay <= target_s:
            answer = c
        if estimate is None and row["mgc"] <= target_s:
            estimate = c
    table = pd.DataFrame(rows, index=pd.RangeIndex(1, c + 1, name="workers"), columns=COLUMNS)
    return Capacity(
        target=target_s,
        percentile=percentile,
        workers=answer,
        estimate=estimate,
        table=table,
        jobs=len(arrivals),
        arrival_rate=rate,
        service_mean=mean,
        ca2=ca2,
        cs2=cs2,
        overhead=float(overhead),
        measured=_percentile(waits, percentile) if len(waits) else math.nan,
        measured_workers=workers,
    )


def _workload(
    frame: pd.DataFrame, target: float | timedelta, percentile: float, max_workers: int
) -> tuple[float, np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The checked target in seconds; arrival times (s from the first), sorted; the service
    times as (run_s * attempts, attempts) so an overhead per attempt can be added; the
    measured waits of the same jobs (NaN dropped)."""
    import numpy as np
    import pandas as pd

    target_s = target.total_seconds() if isinstance(target, timedelta) else target
    if not isinstance(target_s, (int, float)) or not target_s > 0 or math.isinf(target_s):
        raise ValueError(f"target must be a wait in seconds > 0, not {target!r}")
    if not isinstance(percentile, (int, float)) or not 0 < percentile < 1:
        raise ValueError(f"percentile must be between 0 and 1 (0.9 for p90), not {percentile!r}")
    if not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"max_workers must be a whole number >= 1, not {max_workers!r}")
    missing = [c for c in ("created", "run_s") if c not in frame.columns]
    if missing:
        raise ValueError(f"not a job history frame: no column(s) {missing}")
    ran = frame[frame["run_s"].notna() & frame["created"].notna()]
    if ran.empty:
        raise ValueError("no finished jobs in the frame: nothing to replay")
    ran = ran.sort_values("created", kind="stable")
    created = pd.to_datetime(ran["created"], utc=True)
    arrivals = (created - created.iloc[0]).dt.total_seconds().to_numpy(float)
    tries = ran["attempts"] if "attempts" in ran.columns else pd.Series(1, index=ran.index)
    tries = pd.to_numeric(tries, errors="coerce").fillna(1).clip(lower=1).to_numpy(float)
    run = ran["run_s"].to_numpy(float).clip(min=0)
    waits = ran["wait_s"].dropna().to_numpy(float) if "wait_s" in ran.columns else np.array([])
    return float(target_s), arrivals, (run * tries, tries), waits


def replay_waits(arrivals: np.ndarray, service: np.ndarray, workers: int) -> np.ndarray:
    """The wait of each job when ``workers`` servers take the jobs in order of ``arrivals``
    (sorted), each busy for the job's ``service`` seconds.

    A heap of the times each worker is next free: the next job goes to the earliest, starting
    when both it and the worker are there. One worker is Lindley's recursion, vectorised.
    """
    import numpy as np

    if workers < 1:
        raise ValueError("workers must be >= 1")
    if len(arrivals) == 0:
        return np.array([], dtype=float)
    if workers == 1:  # W[n] = max(0, W[n-1] + S[n-1] - (A[n] - A[n-1])): a running maximum
        steps = np.concatenate(([0.0], service[:-1] - np.diff(arrivals)))
        level = np.cumsum(steps)
        return level - np.minimum.accumulate(np.minimum(level, 0.0))
    free = [float(arrivals[0])] * workers  # a valid heap: all equal
    waits: list[float] = []
    append, replace = waits.append, heapq.heapreplace
    for arrived, busy in zip(arrivals.tolist(), service.tolist(), strict=True):
        start = free[0]
        if start < arrived:
            start = arrived
        append(start - arrived)
        replace(free, start + busy)
    return np.array(waits)


def fit_overhead(
    arrivals: np.ndarray,
    service: tuple[np.ndarray, np.ndarray],
    waits: np.ndarray,
    workers: int,
    percentile: float,
) -> float:
    """The seconds per attempt that, added to each run, make the replay with ``workers``
    reproduce the measured percentile wait (0 if it waits longer than measured without any).

    More work per job never shortens a FIFO queue's waits, so the replay's percentile grows
    with the overhead and bisection finds it.
    """
    if not len(waits):
        raise ValueError('overhead="fit" needs measured waits (wait_s) to fit to')
    run, tries = service
    goal = _percentile(waits, percentile)

    def replayed(extra: float) -> float:
        return _percentile(replay_waits(arrivals, run + tries * extra, workers), percentile)

    if replayed(0.0) >= goal:
        return 0.0
    low, high = 0.0, max(float(run.mean()), 1e-3)
    while replayed(high) < goal:  # waits grow without bound with the overhead
        low, high = high, high * 2
    for _ in range(_FIT_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if replayed(middle) < goal else (low, middle)
    return (low + high) / 2


def erlang_c(workers: int, load: float) -> float:
    """Erlang C: the chance that a job waits in M/M/c with ``workers`` servers and an offered
    ``load`` of λ/μ erlangs; 1 when ``load >= workers`` (the queue grows without bound).

    Through Erlang B's recursion B(k) = a·B(k-1) / (k + a·B(k-1)), stable for any c, then
    C = B / (1 - r(1 - B)) with r = a / c.
    """
    if load <= 0:
        return 0.0
    if load >= workers:
        return 1.0
    blocking = 1.0
    for k in range(1, workers + 1):
        blocking = load * blocking / (k + load * blocking)
    utilization = load / workers
    return blocking / (1 - utilization * (1 - blocking))


def mgc_wait(
    percentile: float,
    workers: int,
    rate: float,
    service_mean: float,
    variability: float = 1.0,
) -> float:
    """The ``percentile`` wait in M/G/c by Allen-Cunneen: Erlang C's tail
    P(W > t) = C · exp(-(cμ - λ) t / k) with k = ``variability`` = (ca² + cs²) / 2, so
    t = k · ln(C / (1 - p)) / (cμ - λ) when C > 1 - p, else 0; ∞ when cμ <= λ.

    With k = 1 it is M/M/c's exact percentile; with other k, Allen-Cunneen's mean wait
    C·k / (cμ - λ) with an exponential tail around it (an approximation).
    """
    if rate <= 0 or service_mean <= 0:
        return 0.0
    load = rate * service_mean
    if load >= workers:
        return math.inf
    chance = erlang_c(workers, load)
    if chance <= 1 - percentile:
        return 0.0
    return variability * math.log(chance / (1 - percentile)) / (workers / service_mean - rate)


def _moments(arrivals: np.ndarray, service: np.ndarray) -> tuple[float, float, float, float]:
    """Mean arrival rate, mean service time, and the squared coefficients of variation of the
    inter-arrival and service times (NaN where there is too little to tell)."""
    import numpy as np

    gaps = np.diff(arrivals)
    gap = float(gaps.mean()) if len(gaps) else math.nan
    rate = 1 / gap if gap > 0 else math.nan
    ca2 = float(gaps.var() / gap**2) if gap > 0 else math.nan
    mean = float(service.mean())
    cs2 = float(service.var() / mean**2) if mean > 0 else 0.0
    return rate, mean, ca2, cs2


def _estimates(
    c: int, rate: float, mean: float, ca2: float, cs2: float, percentile: float
) -> dict[str, float]:
    """One row's queueing-theory columns (NaN when the rate can't be told)."""
    if not math.isfinite(rate):
        return dict.fromkeys(["utilization", "p_wait", "mmc", "mgc"], math.nan)
    variability = (ca2 + cs2) / 2
    return {
        "utilization": rate * mean / c,
        "p_wait": erlang_c(c, rate * mean),
        "mmc": mgc_wait(percentile, c, rate, mean),
        "mgc": mgc_wait(percentile, c, rate, mean, variability),
    }


def _percentile(values: np.ndarray, percentile: float) -> float:
    """Linear interpolation between jobs, as ``Series.quantile`` and ``summary``."""
    import numpy as np

    return float(np.quantile(values, percentile))


def _seconds(value: Any) -> str:
    """A wait for reading; an exact zero as "0" (no job waited), not "0 ms"."""
    return "0" if value == 0 else format_seconds(value)
