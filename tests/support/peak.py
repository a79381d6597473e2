"""Run in a process of its own: ``python -m tests.support.peak URI DB QUEUE`` loads that
queue's whole history once and prints the growth of the process's peak RSS during
``q.history(limit=None)`` and the frame's own size (``memory_usage(deep=True)``), in bytes,
as JSON. A process of its own, so that neither the test's server nor its other objects
count, and the peak is reset just before (Linux: ``/proc/self/clear_refs``)."""

from __future__ import annotations

import gc
import json
import sys

from mjq_notebook import JobQueue
from mjq_notebook.server import client_for


def _kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def main(uri: str, db: str, name: str) -> None:
    q = JobQueue(client_for(uri)[db], name=name)
    from tqdm.auto import tqdm  # noqa: F401  (the progress bar over 10,000 jobs imports it)

    q.history(limit=2000)  # imports and first allocations outside the measurement
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _kb("VmRSS")
    frame = q.history(limit=None)
    growth = (_kb("VmHWM") - before) * 1024
    size = int(frame.memory_usage(deep=True).sum())
    print(json.dumps({"rows": len(frame), "peak_growth": growth, "frame": size}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
