"""Every benchmark still runs: each ``benchmarks/bench_*.py`` with ``--smoke`` (tiny sizes, one
round, seconds) exits 0 and prints its report, so one the code has moved away from fails the
build instead of rotting until someone measures again. The figures themselves are not checked
here: a smoke run's mean nothing (``benchmarks/RESULTS.md`` has the measured ones)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .support.browser import require_chromium

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"

# A line of each report that only a run to its end prints: its ratios, baselines or verdicts.
REPORT_LINE = {
    "bench_aging.py": r"aged/fresh: pub\+claim\+done \d+\.\d+x",
    "bench_dashboard.py": r"first load .*median \d+\.\d+ s",
    "bench_errors.py": r"\| q\.errors\(\) \| \d+ \| [\d.]+ \| find of the error fields .*\d+x \|",
    "bench_durability.py": r"\| q\.pub, per job \| [\d.]+ \| [\d.]+ \| \d+\.\d+x \|",
    "bench_find.py": r"\| `data\.user:user042` \(\d+ found\) \| [\d.]+ \| [\d.]+ \| [\d.]+x \|",
    "bench_metrics.py": r"\| roller every 30 s \(a Worker's\) \| [\d.]+ \| [\d.]+x \| \d+ \|",
    "bench_rebuild.py": r"after/before: time [\d.]+x, peak RSS growth [\d.]+x",
    "bench_history.py": r"\| history\(\) \| \d+ \| raw fetch, same projection \| \d+ \| [\d.]+x",
    "bench_queue.py": r"\| pub\+claim\+done per job, mean \(ms\) \| [\d.]+ \| [\d.]+ \| [\d.]+x",
    "bench_refresh.py": r"\| newest 50 jobs \| .* \| \d+\.\d+x wall",
    "bench_room.py": r"\| pub per job, empty ring \|( [\d.]+x? \|){8}",
    "bench_targets.py": r"\d+ of \d+ targets met",
    # (a smoke run under load may see no job waiting: no insert lag to compare)
    "bench_widgets.py": r"tail: lag insert p50 (\d+\.\d+x|n/a).*CPU \d+\.\d+x",
}
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("bench_*.py"))
BROWSER = {"bench_dashboard.py"}  # drives Chromium: with the browser tests, on their worker


def run_smoke(script: str) -> str:
    """``python benchmarks/<script> --smoke`` from the repository's root, this checkout's
    package first on the path; its output, after checking that it exited 0."""
    path = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script} --smoke exited {done.returncode}:\n{output[-3000:]}"
    return done.stdout


def test_every_benchmark_has_a_smoke_run_here():
    assert set(REPORT_LINE) == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - BROWSER))
def test_the_benchmark_runs_in_smoke_mode(script):
    out = run_smoke(script)
    assert out.startswith("smoke:"), out[:500]  # the report says first its figures mean nothing
    assert re.search(REPORT_LINE[script], out), f"no report line in:\n{out[-3000:]}"


@pytest.mark.browser
@pytest.mark.parametrize("script", sorted(BROWSER))
def test_the_browser_benchmark_runs_in_smoke_mode(script):
    require_chromium()
    out = run_smoke(script)
    assert out.startswith("smoke:"), out[:500]
    assert re.search(REPORT_LINE[script], out), f"no report line in:\n{out[-3000:]}"
