"""Job handlers for worker processes started by the tests (`mjq work handlers:<name>`).

Each appends ``<job id> <pid> <attempt>`` to the file named by MJQ_TEST_LOG; small appends
to a file opened with O_APPEND are atomic, so concurrent processes can share it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def _log(job, word: str = "ran") -> None:
    with open(os.environ["MJQ_TEST_LOG"], "a") as f:
        f.write(f"{job.id} {os.getpid()} {job.attempts} {word}\n")


def record(job):
    """Note the job and take a little time, so that several workers interleave."""
    time.sleep(float(os.environ.get("MJQ_TEST_SLEEP", "0.01")))
    _log(job)
    return {"pid": os.getpid()}


def hang(job):
    """Note the start, then never finish (the test kills this worker)."""
    _log(job, "started")
    time.sleep(3600)


def fail_first(job):
    """Fail the first attempt of every job, succeed on the retry."""
    _log(job)
    if job.attempts == 1:
        raise RuntimeError("first attempt always fails")
    return "second time lucky"


def progress(job):
    """A job whose data has ``progress`` reports 4 of 10 "resizing", then runs until the file
    named by MJQ_TEST_RELEASE exists; others just run."""
    if (job.data or {}).get("progress"):
        job.progress(4, 10, "resizing")
        release = Path(os.environ["MJQ_TEST_RELEASE"])
        while not release.exists():
            time.sleep(0.05)
    _log(job)


def sized(job):
    """Return a result, or raise an error, as large as the job's data asks (``result_mib``,
    ``error_mib``); others just run."""
    data = job.data if isinstance(job.data, dict) else {}
    _log(job)
    if "error_mib" in data:
        raise RuntimeError("e" * int(data["error_mib"] * 2**20))
    if "result_mib" in data:
        return "r" * int(data["result_mib"] * 2**20)
    return "ok"


def die(job):
    """End the worker thread, as a handler calling ``sys.exit()`` would."""
    _log(job, "dying")
    raise SystemExit("the handler called sys.exit()")
