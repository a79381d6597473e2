"""The notebook displays: what a job, a list of jobs, a queue and a summary table show, and
that nothing from job data, errors or results can inject markup."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import re
import warnings

import pandas as pd
import pytest
from bson import ObjectId

from mjq_notebook import DataLossWarning, JobQueue, Status, embedded_server
from mjq_notebook.analysis.timing import summary
from mjq_notebook.core.job import Job
from mjq_notebook.notebook import display
from mjq_notebook.notebook.display import (
    STYLE,
    counts_html,
    data_preview,
    escape,
    job_html,
    job_list_html,
    job_list_text,
    queue_html,
    status_badge,
    summary_html,
)
from mjq_notebook.server import client_for
from mjq_notebook.text import format_ago, format_seconds

from .support.xss import XSS, assert_inert

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# -- formatters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.85, "850 ms"), (0.0123, "12.3 ms"), (0.0004, "0.4 ms"), (1.5, "1.5 s"), (12.34, "12.3 s"),
     (2.0, "2 s"), (59.99, "1 min"), (252, "4 min 12 s"), (5400, "1.5 h"), (3 * 86400, "3 d"),
     (0.9996, "1 s"), (-0.25, "-250 ms"), (None, "—"), (float("nan"), "—")],
)  # fmt: skip
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_format_ago():
    assert format_ago(at(0), now=at(4.2)) == "4 s ago"  # whole seconds, format_seconds' words
    assert format_ago(at(3), now=at(0)) == "in 3 s"
    assert format_ago(at(0), now=at(0.25)) == "250 ms ago"
    assert format_ago(at(0), now=at(600)) == "10 min ago"
    assert format_ago(at(0).replace(tzinfo=None), now=at(90)) == "1 min 30 s ago"  # naive: UTC
    assert format_ago(None) == "—"


def test_data_preview_is_one_compact_line_and_cheap_for_huge_data():
    assert data_preview({"kind": "email", "n": 3, "ok": True, "x": None}) == (
        '{"kind": "email", "n": 3, "ok": true, "x": null}'
    )
    assert data_preview({"text": "two\nlines"}) == '{"text": "two\\nlines"}'
    assert data_preview([1, [2, {"a": T0}]]) == '[1, [2, {"a": 2026-03-01T12:00:00.000Z}]]'
    cut = data_preview({"s": "x" * 1000}, width=20)
    assert len(cut) == 20 and cut.endswith("…")
    huge = {"items": list(range(1_000_000))}
    assert data_preview(huge, 30).startswith('{"items": [0, 1, 2') and len(data_preview(huge)) == 80


def test_status_badges_and_counts():
    assert "mjq-s-failed" in status_badge("failed") and ">failed<" in status_badge("failed")
    assert "mjq-s-other" in status_badge("odd") and ">odd<" in status_badge("odd")
    plain = counts_html(
        {"waiting": 3, "working": 1, "done": 1_200, "failed": 0, "cancelled": 0, "lost": 0}
    )
    assert "done 1,200" in plain and "lost" not in plain and "cancelled" not in plain
    assert "cancelled 2" in counts_html({"waiting": 0, "cancelled": 2})
    lost = counts_html({"waiting": 3, "lost": 7})
    assert 'class="mjq-badge mjq-s-lost" title="jobs evicted' in lost and "lost 7" in lost
    assert "7 lost: jobs evicted from the capped collection" in assert_inert(lost)


def test_escape_makes_any_value_text_safe_in_elements_and_quoted_attributes():
    assert escape("""<a href="x" title='y'>&</a>""") == (
        "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
    )
    assert escape(3) == "3" and escape(None) == "None"
    assert escape(["<b>"]) == "[&#x27;&lt;b&gt;&#x27;]"


def test_the_stylesheet_is_the_packaged_css_file():
    package = importlib.resources.files("mjq_notebook.notebook")
    css = package.joinpath("_static").joinpath("display.css")
    text = re.sub(r"/\*.*?\*/", "", css.read_text(encoding="utf-8"), flags=re.S)
    declarations = re.findall(r"([-\w]+)\s*:\s*([^;{}]+?)\s*[;}]", text)
    assert len(declarations) > 80 and ("--mjq-failed", "#c62828") in declarations
    page = Job({"_id": 1, "status": "failed", "data": {}})._repr_html_()
    style = re.fullmatch(r'<div class="mjq"><style>(.*?)</style>.*', page, re.S).group(1)
    for name, value in declarations:  # every declaration of the file, in every fragment
        compact = re.sub(r"\s*([,>])\s*", r"\1", value)
        assert f"{name}:{compact}" in style, (name, value)
    assert "body.vscode-dark .mjq{" in style and "/*" not in style  # dark themes; no comments
    assert STYLE == display.stylesheet() == f"<style>{style}</style>"
    for module in ("display", "markup", "formatting", "job_detail", "tables"):  # no CSS left
        source = package.joinpath(f"{module}.py").read_text(encoding="utf-8")
        assert "--mjq-fg:" not in source, module


# -- one job ---------------------------------------------------------------------------------


def test_a_finished_job_shows_utc_times_relative_times_and_durations():
    job = Job({
        "_id": ObjectId.from_datetime(T0), "status": "done", "priority": 5, "worker": "host:1:ab",
        "ts": {"created": at(0.123), "started": at(1.623), "done": at(1.873)},
        "attempts": 1, "max_attempts": 3, "data": {"kind": "email"}, "result": {"sent": True},
    })  # fmt: skip
    text = assert_inert(job_html(job, now=at(4.3)))
    assert "attempt 1 of 3" in text and "priority 5" in text and "last worker host:1:ab" in text
    assert "2026-03-01 12:00:00.123 UTC · 4 s ago" in text
    assert "2026-03-01 12:00:01.623 UTC · 3 s ago · waited 1.5 s" in text
    assert "2026-03-01 12:00:01.873 UTC · 2 s ago · ran 250 ms" in text
    assert '{"kind": "email"}' in text and '{"sent": true}' in text
    assert "retry due" not in text and "error" not in text
    assert job_html(job, now=at(4.3)).startswith(f'<div class="mjq">{STYLE}')


def test_a_retried_job_shows_its_attempts_retry_time_and_collapsed_traceback(db):
    queue = JobQueue(db, name="retries", lease=30, backoff=60, max_attempts=3)
    job_id = queue.pub({"kind": "resize"})
    job = queue.next()
    try:
        raise ValueError("image too large")
    except ValueError as exc:
        assert queue.fail(job, exc) is True
    waiting = queue.get(job_id)
    page = job_html(waiting)
    text = assert_inert(page)
    assert "next: attempt 2 of 3" in text
    assert re.search(r"retry due\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC · in (59 s|1 min)", text)
    assert "last error" in text and "ValueError: image too large" in text
    # the traceback is there, collapsed (a <details> without "open")
    details = re.search(r'<details class="mjq-tb">(.*?)</details>', page, re.S)
    assert details and "traceback (" in details.group(1) and "raise ValueError" in details.group(1)
    assert "<details open" not in page
    # due now: the next claim is attempt 2 of 3
    now = dt.datetime.now(dt.timezone.utc)
    queue.collection.update_one({"_id": job_id}, {"$set": {"available_at": now}})
    claimed = queue.next()
    text = assert_inert(job_html(queue.get(claimed.id)))
    assert "attempt 2 of 3" in text and "retry due" not in text
    assert re.search(r"waited [\d.]+ (ms|s) · running [\d.]+ (ms|s)", text)
    assert re.search(r"lease until\d{4}-\d\d-\d\d .* UTC · in (29|30) s", text)


def test_data_view_small_values_inline_big_ones_collapsed_long_strings_cut():
    data = {
        "kind": "resize",
        "sizes": [64, 128],
        "image": {"url": "https://example.com/" + "x" * 80, "meta": {"owner": "bob"}},
        "note": "lorem ipsum " * 100,
    }
    page = job_html(Job({"_id": 1, "status": "waiting", "attempts": 0, "data": data}))
    text = assert_inert(page)
    assert '"resize"' in text and "[64, 128]" in text  # small values on one line
    image = re.search(r"<dt>image</dt><dd><details><summary>(.*?)</summary>", page)
    assert image and "2 keys" in image.group(1)  # a big document: collapsed
    note = re.search(r"<dt>note</dt><dd><details><summary>(.*?)</summary><pre>(.*?)</pre>", page)
    assert note and "(1,200 characters)" in note.group(1) and len(note.group(2)) == 1200
    assert "lorem ipsum " * 100 in text  # all of it, one click away


def test_a_job_that_cannot_be_shown_in_full_still_shows():
    page = job_html({"_id": 1, "status": "done", "ts": "not a document", "attempts": "2"})
    assert "Job" in assert_inert(page)


# -- lists and queues ------------------------------------------------------------------------


def test_job_list_html_and_text(queue):
    ids = queue.pub_many([{"n": i} for i in range(3)])
    job = queue.next()
    queue.done(job)
    jobs = queue.jobs()
    page = job_list_html(jobs)
    text = assert_inert(page)
    assert "3 jobs" in text and page.count("<tr>") == 4
    for name in ("id", "status", "created (UTC)", "wait", "run", "attempts", "data"):
        assert f">{name}</th>" in page
    assert str(ids[0]) in text and '{"n": 0}' in text and "1/3" in text and "0/3" in text
    plain = job_list_text(jobs)
    assert plain.splitlines()[0].split() == ["id", "status", "created", "(UTC)", "wait", "run",
                                             "attempts", "data"]  # fmt: skip
    assert str(ids[2]) in plain and "done" in plain and '{"n": 2}' in plain
    assert "no jobs" in assert_inert(job_list_html([])) and job_list_text([]) == "no jobs"


def test_job_list_shows_errors_and_the_ongoing_legend_only_when_there_are_some(db):
    queue = JobQueue(db, max_attempts=1)
    queue.pub_many([{"n": i} for i in range(3)])
    quiet = job_list_html(queue.jobs())  # all waiting: "…" marks their wait
    assert ">error</th>" not in quiet and "still going on" in assert_inert(quiet)
    queue.fail(queue.next(), ValueError("corrupt input <b>from</b> user12\n" + "x " * 50))
    queue.done(queue.next())
    queue.done(queue.next())
    page = job_list_html(queue.jobs())
    text = assert_inert(page)  # escaped: the <b> is text
    assert ">error</th>" in page and "ValueError: corrupt input <b>from</b> user12 x" in text
    assert "still going on" not in text  # nothing waits or runs any more
    plain = job_list_text(queue.jobs())
    assert plain.splitlines()[0].split()[-2:] == ["error", "data"]
    assert "ValueError: corrupt input" in plain and plain.count("\n") == 3
    assert ">error</th>" not in job_list_html(queue.jobs("done"))  # no job there has one
    queue.pub({"later": True}, delay=3600)
    assert "due in 1 h" in assert_inert(job_list_html(queue.jobs("waiting")))  # 59:59.9…
    assert "due in 1 h" in job_list_text(queue.jobs("waiting"))


def test_queue_view_shows_fullness_counts_lost_and_newest_jobs(db):
    queue = JobQueue(db, name="small", max_jobs=10, size_bytes=2**20)
    queue.pub_many([{"n": i} for i in range(4)])
    text = assert_inert(queue_html(queue))
    assert f"JobQueue {db.name} · small" in text
    assert "4 of 10 jobs (40% full)" in text and "up to 1 MiB" in text
    assert "waiting 4" in text and "lost" not in text and '{"n": 3}' in text
    queue.pub_many([{"n": i} for i in range(4, 13)], evict=True)  # 13 unfinished in a ring of 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataLossWarning)
        page = queue_html(queue)
    text = assert_inert(page)
    assert "10 of 10 jobs (100% full)" in text and "mjq-full" in page
    assert 'mjq-s-lost" title="jobs evicted' in page and "lost 3" in text
    assert "3 lost: jobs evicted from the capped collection before they finished" in text
    assert page.count("<tbody><tr>") == 1 and page.count("<tr>") == 11  # head + newest 10


def test_queue_view_never_raises_and_names_no_uri():
    pytest.importorskip("secantus")
    with embedded_server(":memory:") as server:
        client = client_for(server.uri, timeout=0.3)
        queue = JobQueue(client["gone"], "q")
        queue.pub({"n": 1})
    try:
        page = queue_html(queue)  # the server has stopped
    finally:
        client.close()
    text = assert_inert(page)
    assert "unavailable (ServerUnavailable)" in text
    assert str(server.port) not in page and "mongodb://" not in page


def test_queue_view_shows_an_error_type_not_its_message(queue, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mongodb://user:secret@db.example.com")

    monkeypatch.setattr(queue, "counts", broken)
    text = assert_inert(queue_html(queue))
    assert "jobsunavailable (RuntimeError)" in text and "secret" not in text
    assert "of 100,000 jobs" in text  # the other parts still show


# -- summary tables --------------------------------------------------------------------------


def _history(queue, kinds):
    """Finished jobs with known times: per kind, runs of 1 s and 3 s after 0.5 s waits; the
    second job of each kind failed."""
    docs = []
    for k, kind in enumerate(kinds):
        for i, (status, run) in enumerate((("done", 1.0), ("failed", 3.0))):
            start = 10 * k + 4 * i
            docs.append({
                "_id": ObjectId.from_datetime(at(start)), "status": status, "attempts": 1,
                "max_attempts": 3, "data": {"kind": kind}, "priority": 0,
                "ts": {"created": at(start), "started": at(start + 0.5),
                       "done": at(start + 0.5 + run)},
            })  # fmt: skip
    queue.history_collection.insert_many(docs)
    return queue.history()


def test_summary_tables_read_as_durations_and_percentages_once_per_group(queue):
    frame = _history(queue, ["a", "b"])
    table = frame.mjq.summary(by="data.kind")
    assert isinstance(table, pd.DataFrame) and table.loc[("a", "run_s"), "mean"] == 2.0
    page = table._repr_html_()
    text = assert_inert(page)
    assert page.count("50.0%") == 2 and page.count('rowspan="3"') == 4  # kind and rate, twice
    row = re.search(r"<td>run</td>(.*?)</tr>", page).group(1)
    assert re.findall(r">([^<]+)</td>", row) == ["2", "2 s", "2 s", "2.8 s", "2.98 s", "3 s"]
    assert "500 ms" in text and "wait: created → started" in text
    assert table.loc["a"]._repr_html_().count("50.0%") == 1  # a slice still reads well
    assert "dataframe" in table.reset_index()._repr_html_()  # reshaped: pandas' own view
    server = queue.stats(by="data.kind", exact=True)
    assert type(server) is type(table) and server._repr_html_().count("50.0%") == 2
    pd.testing.assert_frame_equal(pd.DataFrame(table), summary(frame, by="data.kind"),
                                  check_frame_type=False)  # fmt: skip


def test_summary_html_of_no_groups_and_missing_values(queue):
    empty = JobQueue(queue.db, name="nothing").history()
    text = assert_inert(summary(empty)._repr_html_())
    assert text.count("—") >= 15  # no durations yet: dashes, not "nan"
    frame = _history(queue, ["a"])
    frame.loc[0, "data.kind"] = None
    page = summary_html(summary(frame, by="data.kind"))
    assert "(none)" in assert_inert(page) and "100.0%" in page and "0.0%" in page


# -- untrusted markup everywhere -------------------------------------------------------------


def test_no_markup_from_data_errors_results_or_ids_gets_through(queue):
    data = {payload: payload for payload in XSS}
    data["nested"] = {XSS[2]: [XSS[3], {XSS[0]: XSS[1] * 40}], "long": XSS[0] * 30}
    data["kind"] = XSS[1]
    queue.pub(data)
    queue.pub({"kind": XSS[0], "text": "\n".join(XSS)})
    done = queue.next()
    queue.done(done, {payload: [payload] for payload in XSS})
    failing = queue.next()
    try:
        raise ValueError("".join(XSS))
    except ValueError as exc:
        queue.fail(failing, exc)
    queue.collection.insert_one({  # hand-written: any id, status, error type, worker
        "_id": XSS[2], "status": XSS[0], "attempts": 3, "max_attempts": XSS[3],
        "priority": XSS[1], "worker": XSS[3], "data": XSS[0], "result": XSS,
        "ts": {"created": T0, "started": None, "done": None},
        "error": {"type": XSS[0], "message": XSS[1], "traceback": "\n".join(XSS)},
    })  # fmt: skip
    queue.collection.insert_one({
        "_id": ObjectId(), "status": "failed", "attempts": 1, "max_attempts": 1,
        "data": {"kind": XSS[2]}, "ts": {"created": T0, "started": T0, "done": T0},
        "error": {"type": XSS[2], "message": XSS[3], "traceback": XSS[0]},
    })  # fmt: skip
    jobs = queue.jobs(limit=10)
    assert len(jobs) == 4
    pages = [job_html(job) for job in jobs]
    pages += [job_list_html(jobs), queue_html(queue), job_list_html([queue.get({"_id": XSS[2]})])]
    frame = queue.history()
    pages.append(summary(frame, by="data.kind")._repr_html_())
    pages.append(queue.stats(by="data.kind", exact=True)._repr_html_())
    pages.append(counts_html({XSS[0]: 1, "lost": 2}))
    pages.append(status_badge(XSS[1]))
    worker = {"_id": XSS[0], "name": XSS[1], "host": XSS[2], "pid": XSS[3], "state": XSS[0],
              "queues": [XSS[1]], "version": XSS[2], "heartbeat": T0, "started": T0,
              "running": [{"id": XSS[3], "since": T0}], "done": 1, "busy": 0.5}  # fmt: skip
    pages.append(display.workers_html([worker], now=T0))
    row = {"queue": XSS[0], **dict.fromkeys(("waiting", "working", "done", "failed"), 1)}
    pages.append(display.queues_html([{**row, "paused": True, "workers": XSS[1]}]))
    who = {"via": XSS[0], "user": XSS[1], "host": XSS[2], "role": XSS[3], "client": XSS[0]}
    entries = [
        {"at": T0, "action": XSS[0], "jobs": [XSS[1]], "who": who, "detail": XSS[2]},
        {"at": XSS[3], "action": "pause", "count": XSS[0], "who": {**who, "via": "page"}},
    ]
    pages.append(display.audit_html(entries, now=T0))
    pages += [display.errors_html(queue.errors()), display.errors_html(frame.mjq.errors())]
    # and as a notebook shows them: a job, a list of jobs, a queue
    pages += [job._repr_html_() for job in jobs] + [jobs._repr_html_(), queue._repr_html_()]
    # every HTML builder of the display layer is in this test (a new one: add it above)
    builders = {name for name in display.__all__ if name.endswith("_html")}
    assert builders == {
        "job_html", "job_list_html", "queue_html", "summary_html", "counts_html", "workers_html",
        "queues_html", "audit_html", "errors_html",
    }  # fmt: skip
    seen = "".join(assert_inert(page) for page in pages)
    for payload in XSS:  # shown as text, not dropped
        assert payload in seen
    assert Status.FAILED.value in seen
