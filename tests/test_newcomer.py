"""What a newcomer tripped over in the widgets (issue 25, item 8): waits that flickered back to
the moment a job was first seen, three buttons called "Requeue", messages that outlived their
truth, "workers 1 (1 lost)", and progress text that said its numbers twice."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
import time

import ipywidgets as W
import pytest

from mjq_notebook import queues
from mjq_notebook.core.registry import Registration, State
from mjq_notebook.notebook.widgets import Dashboard, Publisher, Tail
from mjq_notebook.notebook.widgets.overview import row_html
from mjq_notebook.text import progress_text, workers_count

from .support.views import row
from .support.waiting import wait_for

EVENTUALLY = 5.0
_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(text: str) -> float:
    """The seconds a live cell says: "850 ms …", "12.3 s …", "2 min 47 s …"."""
    pairs = re.findall(r"([\d.]+) (ms|s|min|h|d)\b", text)
    assert pairs and text.endswith(" …"), text
    return sum(float(number) * _UNITS[unit] for number, unit in pairs)


def test_a_waiting_jobs_wait_only_grows_as_other_rows_change(tail, queue):
    """Each time the rows go out (another job came), the waiting job's row says its wait as
    of then: it grows, and it is the wait at the time the rows carry (``table.now``)."""
    waiting = queue.pub({"n": "first"})
    wait_for(lambda: row(tail, waiting) is not None, EVENTUALLY, "the waiting job")
    created = queue.get(waiting)["ts"]["created"].timestamp()
    shown = []
    for n in range(5):
        time.sleep(0.6)  # the wait to grow between refreshes: it is what is measured
        other = queue.pub({"n": n})
        wait_for(lambda: row(tail, other) is not None, EVENTUALLY, "another job")  # noqa: B023
        cell, now = row(tail, waiting)["wait"], tail.table.now / 1000
        shown.append(seconds(cell))
        assert abs(shown[-1] - (now - created)) <= 0.05 * (now - created) + 0.01, cell
    assert shown == sorted(shown) and shown[-1] - shown[0] >= 2.0, shown


def _buttons(widget) -> list[str]:
    """The labels of every button in ``widget``'s tree."""
    found = [widget.description] if isinstance(widget, W.Button) else []
    for child in getattr(widget, "children", ()):
        found += _buttons(child)
    return found


def test_one_word_for_running_failed_jobs_again(tail, queue):
    """The detail's button, the bulk one and the confirmation all say Retry (what q.retry
    does), the confirmation with its count; none says Requeue."""
    failing = [queue.pub({"n": n}, max_attempts=1) for n in range(2)]
    for _ in failing:
        queue.fail(queue.next(timeout=5), "broken")
    tail.select(failing[0])
    wait_for(lambda: tail.requeue_button.layout.display is None, EVENTUALLY, "its button")
    assert tail.requeue_button.description == "Retry"
    assert tail.requeue_all_button.description == "Retry all failed…"
    tail.requeue_all_button.click()
    assert tail.confirm_button.description == "Retry 2 jobs"
    assert tail.cancel_button.description == "Don't retry"
    assert not [label for label in _buttons(tail) if "equeue" in label]
    tail.confirm_button.click()
    wait_for(lambda: queue.counts()["failed"] == 0, EVENTUALLY, "both retried")


def test_a_message_goes_once_the_job_it_is_about_moves_on(tail, queue):
    """ "job … is due now" goes when the job is claimed: it is no longer true."""
    delayed = queue.pub({"later": 1}, delay=60)
    tail.select(delayed)
    wait_for(lambda: tail.actions.run_now_button.layout.display is None, EVENTUALLY, "Run now")
    tail.actions.run_now_button.click()
    assert "is due now" in tail.message.value
    time.sleep(0.5)  # a refresh or two while it is still true: the message stays
    assert "is due now" in tail.message.value
    assert queue.next(timeout=5).id == delayed
    wait_for(lambda: tail.message.value == "", EVENTUALLY, "the message gone once claimed")


def test_messages_go_after_their_time_on_the_dashboards_tick(queue):
    """With nothing happening in the queue, the dashboard's tick clears a message whose time
    is up; the page hides it at that time by itself (a delayed animation)."""
    board = Dashboard(queue)
    try:
        board.tail.notice.ttl = board.publisher.notice.ttl = 1.0
        board.publisher.publish()
        assert "published 1 job" in board.publisher.message.value
        assert "animation:mjq-notice-out 0.3s linear 1s forwards" in board.publisher.message.value
        wait_for(lambda: queue.counts()["waiting"] == 1, EVENTUALLY, "the job published")
        board.tail._say("a message")
        said = time.monotonic()
        wait_for(lambda: board.tail.message.value == "", EVENTUALLY, "the tail's message gone")
        wait_for(lambda: board.publisher.message.value == "", EVENTUALLY, "the form's gone")
        assert time.monotonic() - said >= 1.0
    finally:
        board.close()


def test_a_published_message_goes_when_the_form_is_edited(queue):
    form = Publisher(queue)
    form.publish()
    assert "published 1 job" in form.message.value
    form.editor.value = '{"another": 1}'
    assert form.message.value == ""
    form.editor.value = '{"broken": '
    assert "data-kind='error'" in form.message.value  # a complaint stays while it is true
    time.sleep(0.2)
    form.notice.ttl = 0.0
    form.notice.tick()
    assert "data-kind='error'" in form.message.value


def test_workers_are_counted_one_way_everywhere(queue, db):
    """One lost worker reads "workers: 0 running, 1 lost" in the workers panel (the tail's,
    the dashboard's, q.workers()), the overview's row and `mjq queues`."""
    record = Registration(queue, "gone-1", name="gone", queues=[queue.name],
                          concurrency=1, interval=0.1)  # fmt: skip
    record.write(State.RUNNING, [], {})
    wait_for(lambda: queue.workers()[0]["state"] == "lost", EVENTUALLY, "the worker lost")
    expected = "workers: 0 running, 1 lost"
    assert expected in queue.workers()._repr_html_()
    [row] = [r for r in queues(db) if r["queue"] == queue.name]
    assert expected in html.unescape(row_html(row))
    assert "0 running, 1 lost" in repr(queues(db))
    tail = Tail(queue)
    try:
        tail.workers_button.value = True
        wait_for(lambda: expected in tail.workers_view.widget.value, EVENTUALLY, "the panel")
    finally:
        tail.close()
    assert workers_count({"running": 2, "stopped": 1}) == "2 running, 1 stopped"


def test_progress_says_its_numbers_once(queue):
    """The message alone after the percentage when it already says the numbers; the numbers
    then the message when it adds something; the same in the row, the detail and the text."""
    assert progress_text(5, 10, "step 5 of 10") == "50% · step 5 of 10"
    assert progress_text(4, 10, "resizing") == "40% · 4/10 · resizing"
    assert progress_text(1500, 2000, "1,500 of 2,000 rows") == "75% · 1,500 of 2,000 rows"
    assert progress_text(3, None, "resized 3 photos") == "resized 3 photos"
    assert progress_text(3, None, "resizing") == "3 done · resizing"
    assert progress_text(3, 10, None) == "30% · 3/10"
    job_id = queue.pub({"steps": 10})
    job = queue.next(timeout=5)
    job.progress(5, 10, "step 5 of 10")
    tail = Tail(queue)
    try:
        tail.select(job_id)
        wait_for(lambda: row(tail, job_id) and row(tail, job_id)["progress"], EVENTUALLY, "p")
        assert row(tail, job_id)["progress"] == "50% · step 5 of 10"
        wait_for(lambda: "50% · step 5 of 10" in tail.detail.value, EVENTUALLY, "the detail")
        assert "5/10" not in tail.detail.value
    finally:
        tail.close()


def test_plots_follow_the_theme(queue):
    """No white box in a dark notebook: the PNGs (the history plots, the explorer's) are
    transparent where nothing is drawn, and their text and axes a grey that reads on both."""
    image = pytest.importorskip("matplotlib.image")
    from matplotlib.colors import to_hex

    from mjq_notebook.notebook.widgets.explore import latency_png

    for n in range(6):
        queue.pub({"n": n})
        queue.done(queue.next(timeout=5))
    frame = queue.history()
    figures = [frame.mjq.plot_latency(), frame.mjq.plot_timeline()]
    pngs = [figure._repr_png_() for figure in figures] + [latency_png(frame)]
    for png in pngs:
        pixels = image.imread(io.BytesIO(png))
        assert pixels[0, 0, 3] == 0 and pixels[-1, -1, 3] == 0  # corners: see-through
        white = (pixels[..., :3].min(axis=-1) > 0.98) & (pixels[..., 3] > 0.98)
        assert white.mean() < 0.01, f"{white.mean():.0%} opaque white"
    for figure in figures:
        ax = figure.axes[0]
        texts = [ax.yaxis.label, *ax.get_yticklabels(), ax.title if ax.get_title() else None]
        colours = {to_hex(text.get_color()) for text in texts if text is not None}
        assert colours == {"#777777"}, colours
        assert to_hex(ax.spines["left"].get_edgecolor()) == "#777777"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run tail.js")
def test_the_page_writes_a_live_cell_as_the_kernel_does():
    """tail.js's liveText and formatting.live_text: the same text for the same moment, so a
    row sent by the kernel and the page's next tick never disagree."""
    import datetime as dt

    from mjq_notebook.notebook.formatting import live_text
    from mjq_notebook.notebook.widgets import tail as tail_module

    source = (tail_module._STATIC / "tail.js").read_text()
    functions = source[source.index("function significant") : source.index("// A column's")]
    since = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    cases = [(cell, offset) for cell in ("wait", "run", "due") for offset in
             (-200.0, -4.2, -0.25, 0.0, 0.246, 12.34, 167.0, 3601.0)]  # fmt: skip
    rows = [{"live": cell, "live_from": since.timestamp() * 1000} for cell, _ in cases]
    nows = [(since.timestamp() + offset) * 1000 for _, offset in cases]
    script = functions + (
        f"const rows = {json.dumps(rows)}, nows = {json.dumps(nows)};"
        "console.log(JSON.stringify(rows.map((row, i) => liveText(row, nows[i]))));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    expected = [live_text(c, since, since + dt.timedelta(seconds=o)) for c, o in cases]
    assert json.loads(out.stdout) == expected
