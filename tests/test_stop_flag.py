"""A stop signal's handler sets a flag the main thread waits on: wherever the signal lands,
the wait ends (an Event's lock, taken by both, deadlocked ``mjq serve`` when SIGINT came as
it began to wait)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from mjq_notebook.signals import StopFlag, handling_stop_signals

pytestmark = pytest.mark.timeout(30)  # a deadlock fails in seconds


def test_signals_landing_anywhere_in_a_wait_always_end_it():
    rng, rounds, ended = random.Random(7), 300, []
    for _ in range(rounds):
        flag = StopFlag()
        with handling_stop_signals(flag.set):
            timer = threading.Timer(rng.uniform(0, 0.004), os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            started = time.monotonic()
            while not flag.wait(0):  # waits begun and ended all the time: the signal lands
                # in every part of one (an Event's lock taken twice: a deadlock, soon)
                assert time.monotonic() - started < 5, "the signal was lost"
            ended.append(time.monotonic() - started)
            timer.join()
    assert len(ended) == rounds and max(ended) < 1.0


def test_a_wait_without_a_signal_lasts_its_timeout():
    flag = StopFlag()
    started = time.monotonic()
    assert flag.wait(0.25) is False
    assert 0.24 <= time.monotonic() - started < 1.0
    flag.set()
    assert flag.wait(10) is True and flag.is_set()
