"""The rollups' hourly tier (core/hours.py): each hour document is the merge of its minutes,
a frame read through hours equals the frame from minutes only, a week's read reaches the
server as hour documents, prune_history, rebuilds and upgrades give the same hours, a pass
stopped before its hours is read around, and the fence stops a stale roller."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pandas as pd
import pytest
from pymongo import monitoring

from mjq_notebook import JobQueue
from mjq_notebook.analysis.metrics import frame
from mjq_notebook.core import hours, metrics
from mjq_notebook.core.minutes import COUNTS
from mjq_notebook.core.sketch import Sketch
from mjq_notebook.server.client import client_for

from .support.rollups import seed_rollups
from .support.workload import Workload

UTC = dt.timezone.utc
VOLATILE = ("rolled_at", "fence")
HOURLY = ("1h", "2h", "1D", "W", "MS")  # every period boundary on the hour
SUB_HOUR = ("15min", "90min")  # boundaries inside hours: minutes only


def _midnight(days_ago: int) -> dt.datetime:
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=days_ago)


@pytest.fixture(scope="module")
def workload():
    """Five hours of jobs across midnight UTC two days ago (so a day has two rows)."""
    return Workload(start=_midnight(2) - dt.timedelta(hours=2), minutes=300, jobs=1500)


def _window(workload) -> tuple[dt.datetime, dt.datetime]:
    """From mid-hour to mid-hour: partial hours at both edges, whole ones between."""
    return (workload.start + dt.timedelta(minutes=37),
            workload.start + dt.timedelta(hours=4, minutes=23))  # fmt: skip


def _load(queue, workload):
    queue.history_collection.insert_many([dict(doc) for doc in workload.history])
    queue.attempts_collection.insert_many([dict(doc) for doc in workload.attempts])
    assert metrics.roll(queue) > 0


def _plain(docs):
    return [{k: v for k, v in d.items() if k not in VOLATILE} for d in docs]


def _hour_docs(queue, since=None, until=None):
    query = {} if since is None else {"_id": {"$gte": since, "$lt": until}}
    return list(hours.collection(queue).find(query).sort("_id", 1))


def _from_minutes(queue, since, until, every):
    """The frame as it was before hours: from minute documents only."""
    return frame(metrics.read(queue, since, until), since, until, every)


class _Reads(monitoring.CommandListener):
    """The documents each collection sent back (find and getMore replies), by name."""

    def __init__(self) -> None:
        self.docs: dict[str, int] = defaultdict(int)

    def started(self, event: object) -> None: ...

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if event.command_name in ("find", "getMore") else None
        if cursor:
            batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
            self.docs[cursor["ns"].split(".", 1)[1]] += len(batch)

    def failed(self, event: object) -> None: ...


@pytest.fixture
def listened(queue, server_uri):
    """``queue`` through a client whose reads are counted: (queue, _Reads)."""
    reads = _Reads()
    client = client_for(server_uri, event_listeners=[reads])
    yield JobQueue(client[queue.db.name], name=queue.name, lease=30), reads
    client.close()


def test_hour_documents_are_the_merges_of_their_minutes(queue, workload):
    _load(queue, workload)
    # sampled oldest waiting ages (a pass samples only its current minute): the hour's largest
    for k, age in ((61, 4.0), (75, 9.5), (200, 2.0)):
        minute = workload.start + dt.timedelta(minutes=k)
        metrics.collection(queue).update_one({"_id": minute}, {"$set": {"oldest_wait_s": age}})
    queue.rebuild_metrics(since=workload.start)
    want: dict[dt.datetime, dict] = {}
    for doc in metrics.collection(queue).find():
        at = doc["_id"].replace(minute=0)
        hour = want.setdefault(at, {"_id": at, "at": at, "minutes": 0, "wait": Sketch(),
                                    "run": Sketch(), **dict.fromkeys(COUNTS, 0)})  # fmt: skip
        hour["minutes"] += 1
        for name in COUNTS:
            hour[name] += doc[name]
        for stage in ("wait", "run"):
            hour[stage].merge(Sketch.from_doc(doc[stage]))
        if "oldest_wait_s" in doc:
            hour["oldest_wait_s"] = max(hour.get("oldest_wait_s", 0), doc["oldest_wait_s"])
    stored = _hour_docs(queue)
    assert [d["_id"] for d in stored] == sorted(want) and len(want) == 5
    for doc in stored:
        expected = want[doc["_id"]]
        got = {k: v for k, v in doc.items() if k not in VOLATILE}
        got["wait"], got["run"] = Sketch.from_doc(got["wait"]), Sketch.from_doc(got["run"])
        assert got == expected, doc["_id"]
    ages = {d["_id"]: d.get("oldest_wait_s") for d in stored}
    assert ages[workload.start + dt.timedelta(hours=1)] == 9.5
    assert ages[workload.start + dt.timedelta(hours=3)] == 2.0
    assert ages[workload.start] is None
    assert sum(d["done"] for d in stored) == sum(
        1 for j in workload.history if j["status"] == "done"
    )


def test_frames_through_hours_equal_frames_from_minutes(listened, workload):
    queue, reads = listened
    _load(queue, workload)
    since, until = _window(workload)
    for every in (*HOURLY, *SUB_HOUR):
        reads.docs.clear()
        got = queue.metrics(since=since, until=until, every=every, roll=False)
        through_hours = reads.docs[f"{queue.name}.metrics_hours"]
        through_minutes = reads.docs[f"{queue.name}.metrics"]
        if every in HOURLY:  # 23:00, 00:00, 01:00 whole; 22:37-22:59, 02:00-02:22 minutes
            assert (through_hours, through_minutes) == (3, 23 + 23), every
        else:
            every_minute = {"_id": {"$gte": since.replace(second=0), "$lt": until}}
            in_window = metrics.collection(queue).count_documents(every_minute)
            assert (through_hours, through_minutes) == (0, in_window) and in_window > 200, every
        want = _from_minutes(queue, since, until, every)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got["done"].sum() > 0, every
    days = queue.metrics(since=since, until=until, every="1D", roll=False)
    assert len(days) == 2 and days.index[1] == pd.Timestamp(_midnight(2))


def test_a_week_is_read_as_hour_documents(listened):
    queue, reads = listened
    seeded = seed_rollups(queue, days=7, every_min=2)  # as rollers wrote them before hours
    assert metrics.roll(queue) == 0  # no jobs; but every hour derived from the minutes once
    assert hours.collection(queue).count_documents({}) in (168, 169)
    now = dt.datetime.now(UTC)
    for every in ("1h", "12h"):  # the range picker's 7 d and 90 d steps
        reads.docs.clear()
        got = queue.metrics(since=now - dt.timedelta(days=7), until=now, every=every, roll=False)
        minutes = reads.docs[f"{queue.name}.metrics"]
        hourly = reads.docs[f"{queue.name}.metrics_hours"]  # before the minutes-only read
        assert minutes <= 60 and 166 <= hourly <= 168, (every, minutes, hourly)
        assert (minutes + hourly) * 20 < seeded  # 5,040 minute documents otherwise
        want = _from_minutes(queue, now - dt.timedelta(days=7), now, every)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got["done"].sum() > 0


def test_a_normal_pass_derives_only_the_hours_it_rolled(listened, workload):
    queue, reads = listened
    _load(queue, workload)  # the first pass: every hour (five of the workload's)
    before = _plain(_hour_docs(queue))
    queue.pub({"x": 1})
    queue.done(queue.next())
    reads.docs.clear()
    assert metrics.roll(queue) > 0  # its last 10 minutes: one hour or two, not two days
    assert reads.docs[f"{queue.name}.metrics"] <= 2 * 60 + 11, reads.docs
    now = dt.datetime.now(UTC)
    recent = _hour_docs(queue, now - dt.timedelta(hours=2), now + dt.timedelta(hours=1))
    assert sum(d["done"] for d in recent) == 1
    assert all(d["rolled_at"] < recent[-1]["rolled_at"] for d in _hour_docs(queue)[:5])
    assert _plain(_hour_docs(queue)[:5]) == before


def test_prune_history_and_rebuilds_leave_the_hours(queue, workload):
    _load(queue, workload)
    window = (workload.start - dt.timedelta(hours=1), workload.end + dt.timedelta(hours=1))
    before = _plain(_hour_docs(queue, *window))
    since, until = _window(workload)
    frame_before = queue.metrics(since=since, until=until, every="1h", roll=False)
    assert queue.prune_history(0) == workload.jobs
    assert queue.history_collection.count_documents({}) == 0
    assert _plain(_hour_docs(queue, *window)) == before
    queue.rebuild_metrics(since=workload.start - dt.timedelta(hours=1))  # frozen: as they were
    assert _plain(_hour_docs(queue, *window)) == before
    # every hour derived again from the minutes, the frozen ones too: the same hours
    queue._meta.update_one({"_id": metrics.STATE_ID}, {"$unset": {"hours": ""}})
    hours.collection(queue).update_many({}, {"$set": {"done": -1}})
    metrics.roll(queue)
    assert _plain(_hour_docs(queue, *window)) == before
    after = queue.metrics(since=since, until=until, every="1h")
    columns = [c for c in after.columns if c != "oldest_wait_s"]
    pd.testing.assert_frame_equal(after[columns], frame_before[columns], check_exact=True)


def test_a_rebuild_and_an_upgrade_give_the_same_hours(listened, workload):
    queue, reads = listened
    _load(queue, workload)
    rolled = _plain(_hour_docs(queue))
    assert len(rolled) == 5  # 22:00 to 02:00
    hours.collection(queue).delete_many({})
    queue.rebuild_metrics()
    assert _plain(_hour_docs(queue)) == rolled
    # a deployment from before hours: minutes only, and its state says nothing of hours
    hours.collection(queue).drop()
    queue._meta.update_one({"_id": metrics.STATE_ID}, {"$unset": {"hours": ""}})
    since, until = _window(workload)
    reads.docs.clear()
    got = queue.metrics(since=since, until=until, every="1h", roll=False)
    assert reads.docs[f"{queue.name}.metrics_hours"] == 0  # none yet: not read
    pd.testing.assert_frame_equal(got, _from_minutes(queue, since, until, "1h"), check_exact=True)
    metrics.roll(queue)  # its first pass after the upgrade derives every hour
    assert _plain(_hour_docs(queue)) == rolled
    reads.docs.clear()
    again = queue.metrics(since=since, until=until, every="1h", roll=False)
    assert reads.docs[f"{queue.name}.metrics_hours"] == 3
    pd.testing.assert_frame_equal(again, got, check_exact=True)


def test_hours_a_stopped_pass_left_are_read_from_minutes_then_derived(listened, workload):
    queue, reads = listened
    _load(queue, workload)
    # a pass wrote a minute (a late finish counted) and stopped before deriving its hour
    minute = workload.start + dt.timedelta(hours=2, minutes=30)
    metrics.collection(queue).update_one({"_id": minute}, {"$inc": {"done": 5}})
    queue._meta.update_one({"_id": metrics.STATE_ID}, {"$set": {"hours_from": minute}})
    since, until = _window(workload)
    reads.docs.clear()
    got = queue.metrics(since=since, until=until, every="1h", roll=False)
    assert reads.docs[f"{queue.name}.metrics_hours"] == 1  # the hour before it; minutes after
    pd.testing.assert_frame_equal(got, _from_minutes(queue, since, until, "1h"), check_exact=True)
    hour = workload.start + dt.timedelta(hours=2)
    assert got.loc[pd.Timestamp(hour), "done"] == _hour_docs(queue, hour, minute)[0]["done"] + 5
    metrics.roll(queue)  # the next pass derives the pending hours
    state = queue._meta.find_one({"_id": metrics.STATE_ID})
    assert state["hours_from"] is None and state["hours"] == hours.VERSION
    assert _hour_docs(queue, hour, minute)[0]["done"] == got.loc[pd.Timestamp(hour), "done"]
    reads.docs.clear()
    again = queue.metrics(since=since, until=until, every="1h", roll=False)
    assert reads.docs[f"{queue.name}.metrics_hours"] == 3
    pd.testing.assert_frame_equal(again, got, check_exact=True)


def test_a_stale_roller_cannot_overwrite_the_hours(queue):
    queue.pub({"x": 1})
    queue.done(queue.next())
    stale = metrics._Lease.take(queue._meta, wait=0)
    queue._meta.update_one({"_id": metrics.STATE_ID}, {"$set": {"until": _midnight(1)}})
    assert metrics.roll(queue, wait=0) > 0  # the lease ran out: another takes it
    assert sum(d["done"] for d in _hour_docs(queue)) == 1
    hours.collection(queue).update_many({}, {"$set": {"done": 7}})
    mine = {"holder": stale.me, "token": stale.token, "until": _midnight(-1)}
    queue._meta.update_one({"_id": metrics.STATE_ID}, {"$set": mine})
    with pytest.raises(metrics._Fenced):
        metrics._derive_hours(queue, stale, _midnight(0), dt.datetime.now(UTC))
    assert {d["done"] for d in _hour_docs(queue)} == {7}


def test_which_hours_a_window_reads_as_hours():
    at = dt.datetime(2026, 3, 4, tzinfo=UTC)
    since, until = at.replace(hour=10, minute=37, second=12), at.replace(hour=14, minute=23)
    state = {"hours": hours.VERSION}
    on_the_hour = [at.replace(hour=h) for h in range(24)]
    assert hours.span(since, until, on_the_hour, state) == (
        at.replace(hour=11),
        at.replace(hour=14),
    )
    assert hours.span(since.replace(minute=0), until, [], state)[0] == at.replace(hour=10)
    half_past = [at.replace(hour=12, minute=30)]  # a boundary inside an hour: minutes only
    assert hours.span(since, until, half_past, state) is None
    pending = {**state, "hours_from": at.replace(hour=13, minute=10)}
    assert hours.span(since, until, [], pending) == (at.replace(hour=11), at.replace(hour=13))
    assert hours.span(since, until, [], {}) is None  # never derived (before an upgrade's pass)
    assert hours.span(since, since + dt.timedelta(minutes=50), [], state) is None


def test_weeks_and_months_start_at_midnight():
    since = dt.datetime(2026, 3, 5, 10, 37, tzinfo=UTC)  # a Thursday
    weeks = frame([], since, since + dt.timedelta(days=15), "W")
    assert list(weeks.index) == [pd.Timestamp(s, tz="UTC") for s in
                                 ("2026-03-05 10:37", "2026-03-08", "2026-03-15")]  # fmt: skip
    months = frame([], since, since + dt.timedelta(days=40), "MS")
    assert list(months.index) == [
        pd.Timestamp(s, tz="UTC") for s in ("2026-03-05 10:37", "2026-04-01")
    ]
