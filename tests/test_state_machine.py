"""A stateful property test of the queue: several ``JobQueue`` objects on one queue (as
workers in several processes would have, here sharing the test client) driven by Hypothesis
through random interleavings of pub, pub_many, claim (``next``; ``Empty`` when nothing is
claimable), done, fail (a retry while attempts remain, then failed), release, touch, lease
expiry, the expired-lease requeue, retry, retry_failed, retry_all / cancel_all / promote_all
(in batches) and sweeping, checked after every step against a small model and the real
database.

The model is one record per job: its state (waiting / working / done / failed), the queue
object whose claim the document carries (``worker``), its attempts and max_attempts. A claim
is predicted exactly (highest priority, then oldest; a job past its attempts fails on the
claim that finds it). A handle (the ``Job`` a claim returned) is live while the job is
working under that very claim: same queue object, same attempt, which is what queue.py
matches. ``done`` / ``fail`` / ``release`` / ``touch`` take a handle its worker has not
finished yet (live unless its lease ran out and someone claimed the job again); ``late``
repeats any of them with any handle ever returned, live or stale.

Time is not slept through: the queues have a 600 s lease and ``backoff=0`` (a failed
attempt is claimable again at once), and ``expire_lease`` models time passing by setting a
working job's ``lease_until`` in the past in the collection. The requeue of expired leases
(``leases.Reclaimer.reclaim``) then runs from a claim (``claim(requeue=True)`` opens its
time gate ``_reclaimer.next_at``; ``requeue=False`` holds it shut) or on its own
(``requeue_expired``). Finished jobs are swept out of the ring only where a step says so:
``sweep(now=True)`` calls ``_sweeper.sweep``, ``sweep(now=False)`` opens the gate
(``_sweeper.next_at``) so that the queue's next finish sweeps; otherwise the gates are held shut,
so a run does not depend on the clock. The last queue object sends a finish's two writes one
by one (``_fuse = False``), as on servers before MongoDB 8.0; the others use one client
bulkWrite where the server has it.

Checked after every step (``check_database``, against the database):
- each job in exactly one state over the ring and ``<queue>.history`` together: unfinished
  in the ring and not in history, finished in history (and in the ring at most as a copy in
  the same state); no job missing, none unknown; attempts as the model's;
- never two owners: a working job carries the claim (worker, attempts) of the model's
  owner, its lease expired exactly when the model expired it; a claim returns only the job
  the model predicts, which was waiting (or whose lease had expired); a stale handle's
  done / fail / release / touch raises ``LeaseLostError`` and changes nothing (queue.py
  accepts one thing from a handle that is not live: the very finish its claim already
  made, repeated, as after a lost reply), while a live handle is never refused;
- ``counts()`` (of each queue object in turn) equals the model's, ``lost == 0``, and the
  ``published`` counter equals the jobs published (the ring is big enough to evict none).
``q.history()`` (a DataFrame with one row per job, finished ones with their final status
and attempts) costs more, so it is checked every ``HISTORY_EVERY`` steps and at the end of
every run (``teardown``). Each run gets a fresh database, dropped at its end.

Size: ``MJQ_STATE_EXAMPLES`` runs (default 100, about 20 s on SecantusDB) of up to
``MJQ_STATE_STEPS`` steps (default 40); more for a deeper search, e.g.
``MJQ_STATE_EXAMPLES=1000 MJQ_STATE_STEPS=60 python -m pytest tests/test_state_machine.py``.

Replay: ``python -m pytest tests/test_state_machine.py --hypothesis-seed=N`` makes the same
runs again for the same N (Hypothesis's own pytest option). A failure is shrunk and printed
as the steps that make it (``QueueMachine()`` stands for ``QueueMachine(client)``)::

    state = QueueMachine()
    jobs_0 = state.pub(kind=0, max_attempts=None, priority=0, q=0)
    handles_0 = held_0 = state.claim(q=0, requeue=False)
    state.done(handle=held_0)
    ...

and saved in Hypothesis's example database (``.hypothesis/``), so the next run starts with
it. Shrinking is slow here (each run is a database of its own); Hypothesis stops it after
five minutes and then prints the seed to pass (the test's pytest time-out is longer).
Nothing here depends on SecantusDB: with ``MJQ_TEST_MONGODB_URI`` it runs against a real
mongod.

The machine found a real bug, pinned down by the plain tests at the end of this file: a
worker whose lease had run out, finishing after another worker had taken the job over and
finished it, overwrote that worker's history row and then deleted it (pub; claim(q=0);
expire_lease; requeue_expired; claim(q=1); done(second handle); done(first handle) -> the
job in neither the ring nor history, counts() lost=1).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mjq_notebook import Empty, Job, JobQueue, LeaseLostError
from mjq_notebook.core.parts import bulk
from mjq_notebook.core.wakeup import last_inserted

QUEUES = 3  # JobQueue objects on the same queue
MAX_ATTEMPTS = 2
KINDS = 3  # data.k takes values 0..KINDS-1; retry_failed may select by it
HISTORY_EVERY = 10
EXAMPLES = int(os.environ.get("MJQ_STATE_EXAMPLES", "100"))
STEPS = int(os.environ.get("MJQ_STATE_STEPS", "40"))

WAITING, WORKING, DONE, FAILED = "waiting", "working", "done", "failed"
CANCELLED = "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


queues = st.integers(0, QUEUES - 1)
kinds = st.integers(0, KINDS - 1)
priorities = st.sampled_from([0, 0, 1])
attempts_given = st.sampled_from([None, 1, 3])  # None: the queue's MAX_ATTEMPTS


@dataclass
class Model:
    """What the database should say about one job."""

    state: str
    priority: int
    kind: int
    max_attempts: int
    attempts: int = 0
    worker: int | None = None  # index of the queue object in the document's "worker" field
    expired: bool = False  # working, and its lease set in the past by expire_lease


class QueueMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")  # every job published
    handles = Bundle("handles")  # every Job a claim returned
    held = Bundle("held")  # ...that its worker has not finished, failed or released yet

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client  # the session's pymongo client (tests/conftest.py)
        self.db_name = f"mjq_state_{uuid.uuid4().hex[:10]}"
        db = self.client[self.db_name]
        self.queues = [
            JobQueue(
                db,
                name="q",
                max_jobs=10_000,
                size_bytes=16 * 2**20,
                lease=600,  # never runs out by itself during a run: expire_lease does that
                max_attempts=MAX_ATTEMPTS,
                backoff=0,
            )
            for _ in range(QUEUES)
        ]
        # On MongoDB 8.0+ a finish is one client bulkWrite (history + queue); the last queue
        # object sends them one by one, as on older servers, so both paths are driven.
        self.queues[-1]._fuse = False
        self.index = {q.worker_id: i for i, q in enumerate(self.queues)}
        self.model: dict[Any, Model] = {}
        self.armed: set[int] = set()  # queues whose next finish sweeps
        self.claimed_by: dict[int, int] = {}  # id(handle) -> queue index (handles stay alive)
        self.steps = 0
        self.gates()

    # -- helpers ----------------------------------------------------------------------------

    def gates(self) -> None:
        """Hold the sweep gates shut except where a step armed one (reproducible runs)."""
        for i, q in enumerate(self.queues):
            q._sweeper.finished = 0
            q._sweeper.next_at = 0.0 if i in self.armed else math.inf

    def swept(self) -> None:
        """Forget the armed gates that a finish has used (the sweep reset them)."""
        self.armed = {i for i in self.armed if self.queues[i]._sweeper.next_at == 0.0}

    def owner(self, handle: dict) -> int:
        """The queue object whose claim returned the handle: the one that finishes it."""
        return self.claimed_by[id(handle)]

    def claim_key(self, handle: dict) -> tuple[int | None, int]:
        """What queue.py matches a handle's claim by: its worker and attempt. (release()
        sets the handle's worker to None.)"""
        worker = handle.get("worker")
        return (None if worker is None else self.index[worker]), handle["attempts"]

    def same_claim(self, handle: dict, state: str) -> bool:
        """The job is in ``state`` and carries the handle's claim."""
        job = self.model[handle["_id"]]
        return job.state == state and (job.worker, job.attempts) == self.claim_key(handle)

    def live(self, handle: dict) -> bool:
        """The handle's claim is the job's current one: it may finish, release or touch it."""
        return self.same_claim(handle, WORKING)

    def describe(self, job_id: Any) -> str:
        return f"job {job_id} (model {self.model[job_id]})"

    def publish(self, ids: list, priority: int, kinds_: list[int], max_attempts: int | None):
        for job_id, kind in zip(ids, kinds_, strict=True):
            assert job_id not in self.model
            self.model[job_id] = Model(
                WAITING, priority, kind, MAX_ATTEMPTS if max_attempts is None else max_attempts
            )

    # -- publishing -------------------------------------------------------------------------

    @rule(target=jobs, q=queues, kind=kinds, priority=priorities, max_attempts=attempts_given)
    def pub(self, q, kind, priority, max_attempts):
        self.gates()
        job_id = self.queues[q].pub(
            {"k": kind, "n": len(self.model)}, priority=priority, max_attempts=max_attempts
        )
        self.publish([job_id], priority, [kind], max_attempts)
        return job_id

    @rule(target=jobs, q=queues, kinds_=st.lists(kinds, max_size=4), priority=priorities)
    def pub_many(self, q, kinds_, priority):
        self.gates()
        start = len(self.model)
        ids = self.queues[q].pub_many(
            [{"k": kind, "n": start + n} for n, kind in enumerate(kinds_)], priority=priority
        )
        assert len(ids) == len(kinds_)
        self.publish(ids, priority, kinds_, None)
        return multiple(*ids)

    # -- claiming ---------------------------------------------------------------------------

    def requeue_model(self) -> None:
        for job in self.model.values():
            if job.state == WORKING and job.expired:
                job.state, job.expired = WAITING, False  # worker and attempts stay

    def claimable(self) -> bool:
        return any(
            job.state == WAITING or (job.state == WORKING and job.expired)
            for job in self.model.values()
        )

    @precondition(claimable)
    @rule(targets=(handles, held), q=queues, requeue=st.booleans())
    def claim(self, q, requeue):
        """q.next(): with ``requeue`` the claim first hands back expired leases."""
        return self.next(q, requeue)

    @precondition(lambda self: self.model and not self.claimable())
    @rule(targets=(handles, held), q=queues)
    def claim_none_waits(self, q):
        """q.next() with jobs published but none claimable: Empty at once."""
        return self.next(q, requeue=True)

    def next(self, q, requeue):
        self.gates()
        queue = self.queues[q]
        queue._reclaimer.next_at = 0.0 if requeue else math.inf
        if requeue:
            self.requeue_model()
        # the model's claim: best waiting job; one past its attempts fails and the next is tried
        expected = None
        while True:
            waiting = [i for i, job in self.model.items() if job.state == WAITING]
            if not waiting:
                break
            best = min(waiting, key=lambda i: (-self.model[i].priority, i))
            job = self.model[best]
            job.attempts += 1
            job.worker, job.expired = q, False
            if job.attempts <= job.max_attempts:
                job.state, expected = WORKING, best
                break
            job.state = FAILED  # its last worker was lost with no attempts left
        try:
            got = queue.next()
        except Empty:
            assert expected is None, f"Empty, but {self.describe(expected)} waits"
            self.swept()
            return multiple()
        self.swept()
        assert got.id == expected, (
            f"claimed {got.id}, expected {expected and self.describe(expected)}; "
            f"the claimed one is {self.describe(got.id) if got.id in self.model else 'unknown'}"
        )
        assert got["worker"] == queue.worker_id and got.status == WORKING
        assert got.attempts == self.model[got.id].attempts
        self.claimed_by[id(got)] = q
        return got

    # -- finishing --------------------------------------------------------------------------
    # done / fail / release take a handle its worker has not finished yet (``held``), which
    # is live unless its lease ran out and the job was claimed again; ``late`` repeats any
    # action with any handle ever returned, live or stale.

    @rule(handle=consumes(held))
    def done(self, handle):
        self.act("done", handle)

    @rule(handle=consumes(held))
    def fail(self, handle):
        self.act("fail", handle)

    @rule(handle=consumes(held))
    def release(self, handle):
        self.act("release", handle)

    @rule(handle=held)
    def touch(self, handle):
        self.act("touch", handle)

    @rule(handle=handles, action=st.sampled_from(["done", "fail", "release", "touch"]))
    def late(self, handle, action):
        self.act(action, handle)

    def act(self, action: str, handle) -> None:
        self.gates()
        queue = self.queues[self.owner(handle)]
        job = self.model[handle.id]
        live = self.live(handle)
        final = handle.attempts >= (handle.get("max_attempts") or MAX_ATTEMPTS)
        then = {"done": DONE, "fail": FAILED if final else WAITING}.get(action)
        try:
            if action == "done":
                queue.done(handle, result={"by": self.owner(handle)})
            elif action == "fail":
                assert queue.fail(handle, RuntimeError("boom")) is (not final)
            elif action == "release":
                queue.release(handle)
            else:
                queue.touch(handle)
        except LeaseLostError:
            assert not live, f"{action} refused a live claim of {self.describe(handle.id)}"
            return
        finally:
            self.swept()
        if not live:
            # accepted only as a repeat of the finish this very claim made
            assert then is not None and self.same_claim(handle, then), (
                f"{action} with a stale handle (attempt {handle.attempts}) was accepted: "
                f"{self.describe(handle.id)}"
            )
        elif action == "touch":
            job.expired = False  # a late heartbeat before any requeue keeps the job
        elif action == "release":
            job.state, job.worker, job.expired = WAITING, None, False
            job.attempts -= 1  # a release gives the attempt back
        else:
            job.state, job.expired = then, False  # the worker stays on the document

    # -- time passing -----------------------------------------------------------------------

    @rule(handle=held)
    def expire_lease(self, handle):
        """Time passes for the handle's claim: its lease is over (if it is still live)."""
        if not self.live(handle):
            return
        queue = self.queues[self.owner(handle)]
        updated = queue.collection.update_one(
            {"_id": handle.id, "status": WORKING, "worker": handle["worker"]},
            {"$set": {"lease_until": utcnow() - dt.timedelta(minutes=1)}},
        )
        assert updated.matched_count == 1
        self.model[handle.id].expired = True

    @rule(q=queues)
    def requeue_expired(self, q):
        self.gates()
        self.queues[q]._reclaimer.reclaim()
        self.requeue_model()

    # -- steering from outside ---------------------------------------------------------------

    @rule(q=queues, job_id=jobs, as_id=st.booleans())
    def cancel(self, q, job_id, as_id):
        """q.cancel(): a waiting job becomes cancelled (final); anything else says False."""
        self.gates()
        queue, job = self.queues[q], self.model[job_id]
        arg = job_id if as_id else queue.get(job_id)
        assert queue.cancel(arg) is (job.state == WAITING), self.describe(job_id)
        if job.state == WAITING:
            job.state = CANCELLED

    @rule(q=queues, handle=handles)
    def reclaim(self, q, handle):
        """q.reclaim(handle), "Release now": only the handle's own live claim goes back to
        waiting (worker and attempts stay, as a lease running out leaves them)."""
        self.gates()
        live = self.live(handle)
        assert self.queues[q].reclaim(handle) is live, self.describe(handle.id)
        if live:
            job = self.model[handle.id]
            job.state, job.expired = WAITING, False

    # -- requeueing failed jobs -------------------------------------------------------------

    @precondition(lambda self: any(job.state != WAITING for job in self.model.values()))
    @rule(q=queues, job_id=jobs, as_id=st.booleans())
    def retry(self, q, job_id, as_id):
        """q.retry(job or id) of any job: True for a failed one, else False."""
        self.gates()
        self.retry_one(q, job_id, as_id)

    @precondition(lambda self: any(job.state == FAILED for job in self.model.values()))
    @rule(q=queues, which=st.integers(0, 7), as_id=st.booleans())
    def retry_a_failed_job(self, q, which, as_id):
        """q.retry() of the ``which``-th failed job (in publication order, modulo)."""
        self.gates()
        failed = [job_id for job_id, job in self.model.items() if job.state == FAILED]
        self.retry_one(q, failed[which % len(failed)], as_id)

    def retry_one(self, q, job_id, as_id):
        queue = self.queues[q]
        job = self.model[job_id]
        arg = job_id if as_id else queue.get(job_id)
        assert arg is not None
        assert queue.retry(arg) is (job.state == FAILED)
        if job.state == FAILED:
            job.state, job.worker = WAITING, None
            job.max_attempts = job.attempts + MAX_ATTEMPTS

    @rule(q=queues, kind=st.none() | kinds)
    def retry_failed(self, q, kind):
        self.gates()
        query = None if kind is None else {"data.k": kind}
        failed = [
            job
            for job in self.model.values()
            if job.state == FAILED and (kind is None or job.kind == kind)
        ]
        assert self.queues[q].retry_failed(query) == len(failed)
        for job in failed:
            job.state, job.worker = WAITING, None
            job.max_attempts = job.attempts + MAX_ATTEMPTS

    # -- acting on every match (core/parts/bulk.py), in batches of 1, 2 or the default -----

    @rule(q=queues, kind=st.none() | kinds, action=st.sampled_from(["retry", "cancel", "promote"]),
          batch=st.sampled_from([1, 2, bulk.BATCH]))  # fmt: skip
    def act_on_all(self, q, kind, action, batch):
        """q.retry_all / cancel_all / promote_all of kind ``kind`` (None: every job): exactly
        the failed / waiting / delayed ones (none is delayed here) change, and are counted."""
        self.gates()
        query = {} if kind is None else {"data.k": kind}
        state = {"retry": FAILED, "cancel": WAITING, "promote": None}[action]
        hit = [j for j in self.model.values() if j.state == state and kind in (None, j.kind)]
        default, bulk.BATCH = bulk.BATCH, batch
        try:
            assert getattr(self.queues[q], f"{action}_all")(query) == len(hit), action
        finally:
            bulk.BATCH = default
        self.swept()
        for job in hit:
            if action == "cancel":
                job.state = CANCELLED
            else:
                job.state, job.worker = WAITING, None
                job.max_attempts = job.attempts + MAX_ATTEMPTS

    # -- sweeping ---------------------------------------------------------------------------

    @rule(q=queues, now=st.booleans())
    def sweep(self, q, now):
        """Finished jobs out of the ring: at once, or at the queue's next finish."""
        if not now:
            self.armed.add(q)
            self.gates()
            return
        self.gates()
        queue = self.queues[q]
        queue._sweeper.sweep()
        # the sweep keeps the newest document by _id and the last inserted (the wake-up
        # cursors' footing)
        ring = list(queue.collection.find({}, {"status": 1}))
        kept = {max(doc["_id"] for doc in ring)} if ring else set()
        natural = last_inserted(queue.collection, {"_id": 1})
        kept |= {natural["_id"]} if natural else set()
        left = [d["_id"] for d in ring if d["status"] in FINISHED and d["_id"] not in kept]
        assert not left, f"finished jobs left in the ring by a sweep: {left}"

    # -- checks -----------------------------------------------------------------------------

    @invariant()
    def check_database(self):
        self.steps += 1
        queue = self.queues[self.steps % QUEUES]
        ring = {doc["_id"]: doc for doc in queue.collection.find()}
        history = {doc["_id"]: doc for doc in queue.history_collection.find()}
        unknown = (set(ring) | set(history)) - set(self.model)
        missing = set(self.model) - set(ring) - set(history)
        assert not unknown, f"jobs nobody published: {unknown}"
        assert not missing, f"jobs in neither the ring nor history: {missing}"
        now = utcnow()
        for job_id, job in self.model.items():
            in_ring, in_history = ring.get(job_id), history.get(job_id)
            if job.state in FINISHED:
                assert in_history is not None, f"{self.describe(job_id)} is not in history"
                assert in_history["status"] == job.state, (
                    f"{self.describe(job_id)} is {in_history['status']} in history"
                )
                assert in_ring is None or in_ring["status"] == job.state, (
                    f"{self.describe(job_id)} is {in_ring['status']} in the ring"
                )
                doc = in_history
            else:
                assert in_history is None, (
                    f"{self.describe(job_id)} is also in history as {in_history['status']}"
                )
                assert in_ring is not None and in_ring["status"] == job.state, (
                    f"{self.describe(job_id)} is {in_ring and in_ring['status']} in the ring"
                )
                doc = in_ring
            worker = doc.get("worker")
            assert (None if worker is None else self.index[worker]) == job.worker, (
                f"{self.describe(job_id)} carries the claim of {worker}"
            )
            assert doc["attempts"] == job.attempts, (
                f"{self.describe(job_id)} has {doc['attempts']} attempts"
            )
            if job.state == WORKING:
                assert (doc["lease_until"] < now) == job.expired, (
                    f"{self.describe(job_id)} has lease_until {doc['lease_until']}"
                )
        counts = queue.counts()
        expected = {state: 0 for state in (WAITING, WORKING, DONE, FAILED, CANCELLED)}
        for job in self.model.values():
            expected[job.state] += 1
        assert counts == {**expected, "lost": 0}
        meta = queue._meta.find_one({"_id": "counters"}) or {}
        assert meta.get("published", 0) == len(self.model)
        if self.steps % HISTORY_EVERY == 0:
            self.check_history()

    def check_history(self):
        """q.history(): one row per job, finished ones with their final state."""
        frame = self.queues[0].history(limit=None)
        assert frame["id"].is_unique
        columns = zip(frame["id"], frame["status"], frame["attempts"], strict=True)
        rows = {job_id: (status, attempts) for job_id, status, attempts in columns}
        assert set(rows) == set(self.model)
        finished = {i for i, (status, _) in rows.items() if status in FINISHED}
        assert finished == {i for i, job in self.model.items() if job.state in FINISHED}
        for job_id, (status, attempts) in rows.items():
            job = self.model[job_id]
            assert (status, attempts) == (job.state, job.attempts), self.describe(job_id)

    def teardown(self):
        try:
            self.check_history()
        finally:
            for q in self.queues:
                q._wakeup.close()
            self.client.drop_database(self.db_name)


@pytest.mark.timeout(900)  # a failure may shrink for 5 minutes: print it, don't kill it
def test_queue_state_machine(client):
    run_state_machine_as_test(
        lambda: QueueMachine(client),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            report_multiple_bugs=False,  # shrink one failure well rather than several slowly
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# -- the bug the machine found, step by step ---------------------------------------------------
# Before the fix, a worker whose lease had run out overwrote the history row of the worker
# that took the job over, then deleted it (LeaseLostError all the same): the job was in
# neither the ring nor history, and counts() said lost=1.


def two_workers(db, fused: bool) -> tuple[JobQueue, JobQueue]:
    queues = [JobQueue(db, name="q", lease=600, backoff=0) for _ in range(2)]
    if fused and not queues[0]._fuse:
        pytest.skip("the server has no client bulkWrite (MongoDB < 8.0)")
    for q in queues:
        q._fuse = fused
    return queues[0], queues[1]


def taken_over(late: JobQueue, other: JobQueue) -> tuple[Job, Job]:
    """A job claimed by ``late``, whose lease then runs out, claimed again by ``other``."""
    job_id = late.pub({"n": 1})
    first = late.next()
    late.collection.update_one(
        {"_id": job_id}, {"$set": {"lease_until": utcnow() - dt.timedelta(minutes=1)}}
    )
    other._reclaimer.next_at = 0.0
    second = other.next()
    assert first.id == second.id == job_id
    return first, second


@pytest.mark.parametrize("fused", [True, False], ids=["bulkWrite", "one-by-one"])
def test_a_late_worker_leaves_the_finish_of_the_worker_that_took_over(db, fused):
    late, other = two_workers(db, fused)
    first, second = taken_over(late, other)
    other.done(second, result="second")
    for finish in (lambda: late.done(first, result="first"), lambda: late.fail(first, "late")):
        with pytest.raises(LeaseLostError):
            finish()
        assert other.counts() == {
            "waiting": 0,
            "working": 0,
            "done": 1,
            "failed": 0,
            "cancelled": 0,
            "lost": 0,
        }
        row = other.history_collection.find_one({"_id": first.id})
        assert (row["worker"], row["attempts"], row["result"]) == (other.worker_id, 2, "second")


@pytest.mark.parametrize("fused", [True, False], ids=["bulkWrite", "one-by-one"])
def test_a_finish_replaces_the_row_a_late_worker_left_behind(db, fused):
    """A late worker that died between its history write and taking it back leaves a row;
    the worker holding the job finishes it all the same, and its row is the one kept."""
    late, other = two_workers(db, fused)
    first, second = taken_over(late, other)
    other.history_collection.insert_one({**first, "status": "done", "result": "first"})
    other.done(second, result="second")
    [row] = other.history_collection.find()
    assert (row["worker"], row["attempts"], row["result"]) == (other.worker_id, 2, "second")
    assert other.counts() == {
        "waiting": 0,
        "working": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }


@pytest.mark.parametrize("fused", [True, False], ids=["bulkWrite", "one-by-one"])
def test_a_finish_repeated_with_another_outcome_changes_nothing(db, fused):
    q, _ = two_workers(db, fused)
    q.pub({"n": 1}, max_attempts=1)
    job = q.next()
    q.done(job, result="ok")
    with pytest.raises(LeaseLostError):
        q.fail(job, "too late")
    assert q.counts() == {
        "waiting": 0,
        "working": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
    q.collection.delete_one({"_id": job.id})  # swept out of the ring, as a sweep does
    with pytest.raises(LeaseLostError):  # the same finish again: refused, and it stands
        q.done(job, result="ok")
    assert q.counts() == {
        "waiting": 0,
        "working": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
