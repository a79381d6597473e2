"""Job history as a DataFrame: exact timings from known timestamps, filters run in MongoDB,
both decoders, and the analysis tables on top."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from bson import ObjectId
from pymongo import monitoring

from mjq_notebook import JobQueue
from mjq_notebook.analysis import fetch as fetch_module
from mjq_notebook.analysis import history as history_module
from mjq_notebook.analysis.history import COLUMNS, summary, throughput
from mjq_notebook.server import client_for
from mjq_notebook.text import format_seconds, significant

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def job_doc(status, created, started=None, done=None, *, data=None, attempts=1, **extra):
    """A job document as JobQueue writes it, with chosen times (seconds after T0)."""
    doc = {
        "_id": ObjectId.from_datetime(at(created)),
        "status": status,
        "ts": {
            "created": at(created),
            "started": None if started is None else at(started),
            "done": None if done is None else at(done),
        },
        "data": data if data is not None else {},
        "priority": 0,
        "attempts": attempts,
        "max_attempts": 3,
        "worker": None if status == "waiting" else "host:1:abc",
    }
    doc.update(extra)
    return doc


@pytest.fixture
def known(queue):
    """Finished jobs in history (one also still in the queue), unfinished ones in the queue."""
    done = job_doc("done", 0, 2, 5, data={"kind": "a", "size": 1})
    failed = job_doc(
        "failed", 1, 1.5, 4, data={"kind": "b", "size": 2}, attempts=3,
        error={"type": "ValueError", "message": "no", "traceback": ""},
    )  # fmt: skip
    queue.history_collection.insert_many([done, failed])
    working = job_doc("working", 3, 6, data={"kind": "a", "size": 3})
    waiting = job_doc("waiting", 4, attempts=0, data={"kind": "b", "size": 4})
    pymjq = {  # pymjq pre-filled started/done while the job waited
        "_id": ObjectId.from_datetime(at(7)),
        "status": "waiting",
        "ts": {"created": at(7), "started": at(7), "done": at(7)},
        "data": {"kind": "pymjq"},
    }
    queue.collection.insert_many([done, working, waiting, pymjq])
    return {"done": done, "failed": failed, "working": working, "waiting": waiting, "pymjq": pymjq}


def test_one_row_per_job_with_exact_timings(queue, known):
    frame = queue.history()
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    order = ("done", "failed", "working", "waiting", "pymjq")
    assert list(frame["id"]) == [known[name]["_id"] for name in order]
    rows = frame.set_index("id")
    done, failed = rows.loc[known["done"]["_id"]], rows.loc[known["failed"]["_id"]]
    assert (done.wait_s, done.run_s, done.total_s) == (2.0, 3.0, 5.0)
    assert (failed.wait_s, failed.run_s, failed.total_s) == (0.5, 2.5, 3.0)
    assert failed.error_type == "ValueError" and failed.attempts == 3
    working = rows.loc[known["working"]["_id"]]
    assert working.wait_s == 3.0 and math.isnan(working.run_s) and math.isnan(working.total_s)
    assert pd.isna(working.done)
    for name in ("waiting", "pymjq"):  # no stage has happened, whatever ts says
        row = rows.loc[known[name]["_id"]]
        assert pd.isna(row.started) and pd.isna(row.done) and math.isnan(row.wait_s)
    pymjq = rows.loc[known["pymjq"]["_id"]]
    assert pd.isna(pymjq.attempts) and pd.isna(pymjq.priority)  # unknown, not 0
    assert done.created == pd.Timestamp(at(0)) and str(frame["created"].dt.tz) == "UTC"
    assert list(frame["status"].cat.categories) == ["waiting", "working", "done", "failed",
                                                    "cancelled"]  # fmt: skip
    assert frame["status"].cat.ordered
    assert list(frame["data.kind"]) == ["a", "b", "a", "b", "pymjq"]


def test_a_job_in_both_collections_appears_once_in_its_latest_state(queue):
    stale = job_doc("done", 0, 1, 2, attempts=1)  # a late worker's row, its lease long gone
    queue.history_collection.insert_one(stale)
    queue.collection.insert_one({**stale, "status": "working", "attempts": 2, "ts": {
        "created": at(0), "started": at(10), "done": None}})  # fmt: skip
    [row] = queue.history().itertuples()
    assert (row.status, row.attempts, row.wait_s) == ("working", 2, 10.0)


def test_data_is_flattened_and_kept_exactly(queue):
    queue.collection.insert_many([
        job_doc("waiting", 0, data={"n": 2, "user": {"name": "ann", "tags": ["x", "y"]}}),
        job_doc("waiting", 1, data={"n": 1.5, "user": {"name": "bob"}, "extra": True}),
        job_doc("waiting", 2, data={"n": "three", "user": "not a document"}),
        job_doc("waiting", 3, data="just a string"),
    ])  # fmt: skip
    frame = queue.history()
    assert frame["data.n"][:3].tolist() == [2, 1.5, "three"] and pd.isna(frame["data.n"][3])
    assert type(frame["data.n"][0]) is int  # not 2.0: mixed columns stay as they were stored
    assert frame["data.user.name"].tolist()[:2] == ["ann", "bob"]
    assert frame["data.user.tags"][0] == ["x", "y"]  # lists stay lists
    assert frame["data.user"][2] == "not a document"
    assert frame["data"][3] == "just a string" and pd.isna(frame["data"][0])
    assert frame["data.extra"][1] == True and pd.isna(frame["data.extra"][0])  # noqa: E712


class _Finds(monitoring.CommandListener):
    def __init__(self):
        self.commands = []

    def started(self, event):
        if event.command_name == "find":
            self.commands.append(event.command)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def watched(db, server_uri):
    """The test's queue seen through a client that records every find command."""
    listener = _Finds()
    client = client_for(server_uri, event_listeners=[listener])
    yield JobQueue(client[db.name], lease=30), listener
    client.close()


def test_filters_and_projection_run_in_mongodb(known, watched):
    queue, finds = watched
    frame = queue.history(since=at(1), until=at(4), status=["done", "failed", "working"],
                          query={"data.kind": "a"}, fields=["data.size"])  # fmt: skip
    assert list(frame["id"]) == [known["working"]["_id"]]
    assert [c for c in frame.columns if c.startswith("data")] == ["data.size"]
    assert len(finds.commands) == 2
    for command in finds.commands:
        assert "data.size" in command["projection"] and "data" not in command["projection"]
        text = repr(command["filter"])
        assert "'data.kind': 'a'" in text and "'$in': ['done', 'failed', 'working']" in text


def test_since_accepts_strings_and_durations_and_limit_keeps_the_newest(queue, known):
    assert len(queue.history(since=at(3).isoformat())) == 3
    assert len(queue.history(since="2026-03-01 12:00:03")) == 3  # naive: UTC
    assert len(queue.history(since=dt.timedelta(days=1))) == 0  # the jobs are from March
    assert len(queue.history(since="1h")) == 0 and len(queue.history(until="1h")) == 5
    assert len(queue.history(since="1900-01-01", until="2200-01-01")) == 5
    newest = queue.history(limit=2)
    assert list(newest["id"]) == [known["waiting"]["_id"], known["pymjq"]["_id"]]
    assert queue.history(fields=[]).columns.tolist() == COLUMNS


def test_bad_arguments_are_refused(queue):
    with pytest.raises(ValueError, match="data paths"):
        queue.history(fields=["status"])
    with pytest.raises(ValueError):
        queue.history(status="finished")
    with pytest.raises(ValueError, match="limit"):
        queue.history(limit=0)  # MongoDB would read 0 as "no limit"


@pytest.fixture
def more(queue, known, monkeypatch):
    """Eight jobs (nine documents, one job in both collections) and a default cap of five."""
    queue.history_collection.insert_many([job_doc("done", t, t + 1, t + 2) for t in (10, 11, 12)])
    monkeypatch.setattr(fetch_module, "DEFAULT_LIMIT", 5)
    return known


def test_without_a_limit_only_the_newest_load_and_a_warning_says_so(queue, more):
    with pytest.warns(history_module.HistoryLimitWarning) as caught:
        frame = queue.history()
    assert list(frame["created"]) == [at(t) for t in (4, 7, 10, 11, 12)]
    message = str(caught[0].message)
    assert "newest 5 jobs" in message and "hold ~9" in message
    assert "limit=None" in message and "since=" in message and "fields=[]" in message
    assert caught[0].filename == __file__  # it names the user's line, not ours


def test_a_filtered_load_over_the_cap_keeps_the_newest_too(queue, more, monkeypatch):
    monkeypatch.setattr(fetch_module, "DEFAULT_LIMIT", 2)
    with pytest.warns(history_module.HistoryLimitWarning, match="newest 2 jobs .*; more match"):
        done = queue.history(status="done")  # filtered: no document count to quote
    assert list(done["created"]) == [at(11), at(12)]


def test_explicit_limits_and_small_windows_load_as_asked(queue, more, recwarn):
    assert len(queue.history(limit=None)) == 8
    assert list(queue.history(limit=6)["created"]) == [at(t) for t in (3, 4, 7, 10, 11, 12)]
    assert len(queue.history(since=at(4))) == 5  # within the cap: all of the window
    assert len(queue.history(status="failed")) == 1
    assert not recwarn.list
    with pytest.raises(ValueError, match="limit"):
        queue.history(limit="all")


class _Commands(monitoring.CommandListener):
    def __init__(self):
        self.names = []

    def started(self, event):
        self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_only_big_loads_ask_how_many_jobs_there_are(known, db, server_uri, monkeypatch, capsys):
    listener = _Commands()
    client = client_for(server_uri, event_listeners=[listener])
    try:
        queue = JobQueue(client[db.name], lease=30)
        listener.names.clear()
        assert len(queue.history()) == 5
        assert listener.names == ["find", "find"]  # the common case: no count, no sort
        monkeypatch.setattr(fetch_module, "CHECK_OVER", 3)
        monkeypatch.setattr(fetch_module, "PROGRESS_OVER", 3)
        assert len(queue.history()) == 5
        assert listener.names.count("count") + listener.names.count("aggregate") == 2
        assert "/6" in capsys.readouterr().err  # the bar's total: six documents
    finally:
        client.close()


def test_empty_history_has_the_same_columns_and_types(queue, known, db):
    full = queue.history(fields=[])
    nothing = JobQueue(db, name="nothing")
    for empty in (nothing.history(), nothing.history(fields=[]), nothing.history(limit=5)):
        assert empty.empty and list(empty.columns) == COLUMNS
        pd.testing.assert_series_equal(empty.dtypes, full.dtypes)
    assert summary(empty)["count"].tolist() == [0, 0, 0]
    assert throughput(empty).empty
    assert summary(empty, by="data.kind").empty  # not a KeyError for the missing column


def _python_decoder(monkeypatch):
    monkeypatch.setattr(history_module, "_decode_arrow", lambda batches: None)


def test_pymongoarrow_and_bson_decoders_give_the_same_frame(queue, known, monkeypatch):
    pytest.importorskip("pymongoarrow")
    batches = [b for b in queue.history_collection.find_raw_batches({}, history_module._PROJECTION)]
    assert history_module._decode_arrow(batches) is not None  # the arrow path really runs
    with_arrow = queue.history(fields=[])
    _python_decoder(monkeypatch)
    pd.testing.assert_frame_equal(with_arrow, queue.history(fields=[]))


def test_a_field_of_unexpected_type_falls_back_to_bson(queue, monkeypatch):
    pytest.importorskip("pymongoarrow")
    queue.collection.insert_many([job_doc("waiting", 0), job_doc("waiting", 1, priority="high")])
    frame = queue.history(fields=[])
    _python_decoder(monkeypatch)
    pd.testing.assert_frame_equal(frame, queue.history(fields=[]), check_dtype=False)


def test_the_garbage_collector_is_paused_only_while_decoding(queue, known, monkeypatch):
    import gc

    seen = []
    flatten = history_module._flatten
    monkeypatch.setattr(
        history_module, "_flatten", lambda *a: seen.append(gc.isenabled()) or flatten(*a)
    )
    queue.history()
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        queue.history()
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
    monkeypatch.setattr(history_module, "_flatten", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        queue.history()
    assert gc.isenabled()


def test_a_progress_bar_shows_for_big_loads_only(queue, known, monkeypatch, capsys):
    queue.history()
    assert "history" not in capsys.readouterr().err
    monkeypatch.setattr(fetch_module, "PROGRESS_OVER", 3)
    queue.history()
    assert "history" in capsys.readouterr().err


# -- analysis -------------------------------------------------------------------------------


def _frame(queue):
    """Ten finished jobs with known times: kind a runs 1..5 s, kind b 10..50 s; one b failed."""
    docs = []
    for i in range(5):
        docs.append(job_doc("done", i, i + 0.5, i + 0.5 + (i + 1), data={"kind": "a"}))
        status = "failed" if i == 0 else "done"
        docs.append(job_doc(status, 10 + i, 10 + i + 2, 12 + i + 10 * (i + 1), data={"kind": "b"}))
    queue.history_collection.insert_many(docs)
    queue.collection.insert_one(job_doc("waiting", 30, data={"kind": "c"}))
    return queue.history()


def test_summary_percentiles_and_failure_rate(queue):
    frame = _frame(queue)
    table = frame.mjq.summary(by="data.kind")
    a, b = table.loc["a"], table.loc["b"]
    runs = np.array([1.0, 2, 3, 4, 5])
    assert a.loc["run_s", "count"] == 5 and a.loc["run_s", "mean"] == 3.0
    assert a.loc["run_s", "p90"] == pytest.approx(np.quantile(runs, 0.9))
    assert a.loc["run_s", "p99"] == pytest.approx(4.96) and a.loc["run_s", "max"] == 5.0
    assert b.loc["run_s", "p50"] == 30.0 and b.loc["wait_s", "mean"] == 2.0
    assert a.loc["run_s", "failure_rate"] == 0 and b.loc["total_s", "failure_rate"] == 0.2
    c = table.loc["c"]
    assert c.loc["wait_s", "count"] == 0 and math.isnan(c.loc["wait_s", "p50"])
    overall = frame.mjq.summary()
    assert list(overall.index) == ["wait_s", "run_s", "total_s"]
    assert overall.loc["run_s", "count"] == 10 and overall.loc["run_s", "failure_rate"] == 0.1


def test_summary_keeps_jobs_without_the_group_value(queue, known):
    table = summary(queue.history(), by=["status"])
    assert set(table.index.get_level_values("status")) == {"waiting", "working", "done", "failed"}
    frame = queue.history()
    frame.loc[0, "data.kind"] = None
    groups = summary(frame, by="data.kind").index.get_level_values(0)
    assert groups.isna().sum() == 3  # one NaN group, three stage rows


def test_throughput_counts_events_and_backlog(queue, known):
    table = throughput(queue.history(), freq="2s")
    assert table.index[0] == pd.Timestamp(at(0)) and table.index.freq == "2s"
    assert table["created"].tolist() == [2, 1, 1, 1]  # at 0, 1 | 3 | 4 | 7 s
    assert table["started"].tolist() == [1, 1, 0, 1]  # 1.5 | 2 | - | 6
    assert table["done"].tolist() == [0, 0, 2, 0]  # 4, 5
    assert table["backlog"].tolist() == [1, 1, 2, 2]  # ends with the waiting and pymjq jobs
    assert table["running"].tolist() == [1, 2, 0, 1]  # ends with the working job


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(63.6, "1 min 4 s"), (64, "1 min 4 s"), (90, "1 min 30 s"), (252, "4 min 12 s"),
     (59.99, "1 min"), (120.4, "2 min"), (599.6, "10 min"), (1538, "26 min"),
     (3569, "59 min"), (3599.6, "1 h"), (3816, "1.1 h"), (5400, "1.5 h"), (12.34 * 3600, "12 h"),
     (3 * 86400, "3 d"), (0.004, "4 ms"), (0.85, "850 ms"), (12.34, "12.3 s")],
)  # fmt: skip
def test_durations_read_as_people_write_them(seconds, text):
    """Not "1.06 min" (a decimal minute reads as seconds): minutes with whole seconds up to
    10 min, then whole minutes; hours and days with one decimal at most."""
    assert format_seconds(seconds) == text


def test_small_numbers_keep_their_significant_digits():
    # notebook 03 once printed "90% of them waited under 0.00 s" for a 4 ms p90
    assert [significant(v) for v in (0.004, 0.0123, 0.5, 0.09996, 0, 1.234, 850.4)] == [
        "0.004", "0.0123", "0.5", "0.1", "0", "1.23", "850"]  # fmt: skip


def test_accessor_needs_a_history_frame():
    assert not hasattr(pd.DataFrame({"a": [1]}), "mjq")
    with pytest.raises(AttributeError, match="wait_s"):
        pd.DataFrame({"status": []}).mjq  # noqa: B018


# -- server-side stats ----------------------------------------------------------------------


def _assert_same_table(server, client):
    assert server.index.equals(client.index) and list(server.columns) == list(client.columns)
    np.testing.assert_allclose(server.to_numpy(float), client.to_numpy(float), rtol=1e-9)


def test_exact_stats_agree_with_summary(queue):
    _frame(queue)
    queue.collection.insert_one({  # a job pymjq finished: counted from the queue
        "_id": ObjectId.from_datetime(at(40)), "status": "done", "data": {"kind": "a"},
        "ts": {"created": at(40), "started": at(41), "done": at(43)}})  # fmt: skip
    kindless = job_doc("done", 50, 51, 52)  # no kind: a NaN group
    queue.history_collection.insert_one(kindless)
    queue.collection.insert_one(kindless)  # finished by us: in both, counted once
    frame = queue.history()
    _assert_same_table(queue.stats(exact=True), summary(frame))
    _assert_same_table(queue.stats(by="data.kind", exact=True), summary(frame, by="data.kind"))
    since = queue.stats(since=at(10), exact=True)
    _assert_same_table(since, summary(queue.history(since=at(10))))
    assert since.loc["run_s", "count"] == 7  # kind b, the pymjq job and the kindless one


def test_servers_without_percentile_get_exact_stats(queue, monkeypatch):
    from mjq_notebook.analysis import stats as server_stats

    frame = _frame(queue)
    monkeypatch.setattr(server_stats, "PERCENTILE_WIRE_VERSION", 10**6)  # as on MongoDB 6.0
    _assert_same_table(queue.stats(by="data.kind"), summary(frame, by="data.kind"))


def test_stats_refuses_fields_it_cannot_group_by(queue):
    with pytest.raises(ValueError, match=r"data\.<field>"):
        queue.stats(by="created")


def test_approximate_stats_stay_between_neighbouring_values(queue):
    frame = _frame(queue)
    server, client = queue.stats(by="data.kind"), summary(frame, by="data.kind")
    assert server.index.equals(client.index)
    exact = ["count", "mean", "max", "failure_rate"]
    _assert_same_table(server[exact], client[exact])
    for (kind, stage), row in server.iterrows():
        values = frame.loc[frame["data.kind"] == kind, stage].dropna()
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            if len(values):
                low, high = values.quantile([max(q - 0.25, 0), min(q + 0.25, 1)])
                assert low <= row[name] <= high, (kind, stage, name)


# -- plots ----------------------------------------------------------------------------------


@pytest.fixture
def agg():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_latency_plot_marks_the_percentiles(queue, agg):
    frame = _frame(queue)
    figure = frame.mjq.plot_latency()
    wait_axes, run_axes = figure.axes
    assert wait_axes.get_title() == "waiting for a worker (10 jobs)"
    lines = [line.get_xdata()[0] for line in run_axes.get_lines()]
    runs = frame["run_s"].dropna()
    assert lines == pytest.approx(list(runs.quantile([0.5, 0.9, 0.99])))
    assert run_axes.get_xscale() == "log" and "10 jobs" in run_axes.get_title()
    figure.savefig(__import__("io").BytesIO(), format="png")


def test_timeline_plot_and_empty_plots(queue, known, db, agg):
    figure = queue.history().mjq.plot_timeline(freq="1s")
    top, bottom = figure.axes
    assert [t.get_text() for t in top.get_legend().get_texts()] == ["created", "started", "done"]
    assert sorted(t.get_text() for t in bottom.get_legend().get_texts()) == [
        "backlog (waiting)",
        "running",
    ]
    empty = JobQueue(db, name="nothing").history()
    for plot in (empty.mjq.plot_latency, empty.mjq.plot_timeline):
        plot().savefig(__import__("io").BytesIO(), format="png")
