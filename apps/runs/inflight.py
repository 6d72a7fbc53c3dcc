"""The executions a worker process is running, and the one thread that heartbeats them all: a
single UPDATE every few seconds stamps ``heartbeat_at`` and reads back ``cancel_requested``, and
a short-lived Redis key per worker says the process holding them is alive (``alive_key``: the
reaper requeues the runs of a worker whose key expired without waiting for their heartbeat to
grow stale). Between two beats that thread waits on its workers' cancel lists (``cancel_key``,
which ``execution_cancel`` pushes to): a cancelled run is stopped as soon as it is asked, not at
the next beat."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)


def heartbeat_seconds() -> float:
    return float(getattr(settings, "KAI_RUN_HEARTBEAT_SECONDS", 2))


def alive_seconds() -> float:
    """How long a worker's liveness key outlives its last heartbeat."""
    return max(5 * heartbeat_seconds(), 10.0)


def alive_key(worker: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:runs:alive:{worker}"


def cancel_key(worker: str) -> str:
    """The list of the ids of ``worker``'s runs whose cancel was requested (``execution_cancel``)."""
    return f"{settings.KAI_REDIS_PREFIX}:runs:cancel:{worker}"


def signal_cancel(*, execution_id, worker: str) -> None:
    """Tell the worker holding a run that its cancel was requested (after the flag committed); a lost
    signal only delays the stop to the worker's next heartbeat, which reads the flag."""
    if not worker:
        return
    try:
        pipe = get_redis_connection("default").pipeline(transaction=False)
        pipe.rpush(cancel_key(worker), str(execution_id))
        pipe.expire(cancel_key(worker), int(alive_seconds() * 2))
        pipe.execute()
    except Exception:
        logger.warning("could not signal the cancel of %s in Redis; the heartbeat still sees it", execution_id)


@dataclass
class RunHandle:
    execution_id: str
    worker: str = ""  # the name the run records (``Execution.worker``)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    #: stopped by its worker's shutdown, not by a person: it goes back to PENDING, not CANCELLED
    requeue: bool = False
    #: the run is no longer this process's (ended, or requeued and claimed elsewhere): stop, write nothing
    lost: bool = False

    def cancel(self, reason: str) -> None:
        if not self.cancel_event.is_set():
            self.cancel_reason = reason
            self.cancel_event.set()


class InFlightRegistry:
    """The executions this worker process is running, and the thread that heartbeats them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, RunHandle] = {}
        self._thread: threading.Thread | None = None
        self._marked: dict[str, float] = {}  # worker → when its liveness key was last set

    def add(self, execution_id, worker: str = "") -> RunHandle:
        handle = RunHandle(str(execution_id), worker=worker)
        if worker and time.monotonic() - self._marked.get(worker, -1e9) >= heartbeat_seconds() / 2:
            # a burst of runs marks its worker once, not once per run
            self._marked[worker] = time.monotonic()
            self._mark_alive({worker})
        with self._lock:
            self._runs[handle.execution_id] = handle
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="kai-run-heartbeat", daemon=True)
                self._thread.start()
        return handle

    def remove(self, handle: RunHandle) -> None:
        with self._lock:
            self._runs.pop(handle.execution_id, None)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def drain(self, deadline: float) -> None:
        """The worker is stopping: let the runs in flight finish until ``deadline`` (monotonic),
        then stop the rest at their next token or step; they go back to PENDING and the queue."""
        while self.ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        with self._lock:
            handles = list(self._runs.values())
        for handle in handles:
            handle.requeue = True
            handle.cancel("its worker is shutting down")
        if handles:
            logger.warning("drain time over: %d run(s) go back to the queue", len(handles))

    def _loop(self) -> None:
        while True:
            self.wait_for_cancels(time.monotonic() + heartbeat_seconds())
            try:
                self.beat()
            except Exception:
                logger.warning("run heartbeat failed; retrying", exc_info=True)
                try:
                    connection.close()
                except Exception:
                    pass

    def wait_for_cancels(self, until: float) -> None:
        """Until ``until`` (monotonic): stop each run of this process whose cancel is signalled."""
        while (remaining := until - time.monotonic()) > 0:
            with self._lock:
                keys = sorted({cancel_key(h.worker) for h in self._runs.values() if h.worker})
            if remaining < 0.05:
                time.sleep(remaining)
                return
            if not keys:  # no run in flight: look again shortly (a run may start before the next beat)
                time.sleep(min(0.1, remaining))
                continue
            try:
                # under the client's socket timeout (KAI_REDIS_TIMEOUT, 2 s by default)
                popped = get_redis_connection("default").blpop(keys, timeout=max(0.05, min(1.0, remaining)))
            except Exception:  # Redis down: the heartbeat's read of the flag still stops the run
                time.sleep(remaining)
                return
            if popped:
                with self._lock:
                    handle = self._runs.get(popped[1].decode() if isinstance(popped[1], bytes) else str(popped[1]))
                if handle is not None:
                    handle.cancel("cancelled by user")

    def beat(self) -> None:
        ids = self.ids()
        if not ids:
            return
        with self._lock:
            workers = {h.worker for h in self._runs.values() if h.worker}
            anonymous = any(not h.worker for h in self._runs.values())
        self._mark_alive(workers)  # before the UPDATE: a slow database never makes a live worker look dead
        try:
            with connection.cursor() as cursor:
                # only runs still held by this process's workers: one the reaper gave to another is not ours
                # the rows locked in id order, as the batched ends and flushes lock theirs (no deadlock)
                cursor.execute(
                    "UPDATE crews_execution e SET heartbeat_at = now() FROM (SELECT id FROM crews_execution "
                    "WHERE id = ANY(%s::uuid[]) AND status IN ('PREPARING', 'RUNNING') AND (worker = ANY(%s) OR %s) "
                    "ORDER BY id FOR UPDATE) AS lk WHERE e.id = lk.id RETURNING e.id, e.cancel_requested",
                    [ids, sorted(workers), anonymous],
                )
                rows = cursor.fetchall()
        finally:
            connection.close()
        alive = set()
        with self._lock:
            for execution_id, cancel_requested in rows:
                alive.add(str(execution_id))
                handle = self._runs.get(str(execution_id))
                if handle and cancel_requested:
                    handle.cancel("cancelled by user")
            for execution_id in ids:
                handle = self._runs.get(execution_id)
                if handle and execution_id not in alive:
                    handle.lost = True
                    handle.cancel("the execution was ended elsewhere")

    @staticmethod
    def _mark_alive(workers: set[str]) -> None:
        if not workers:
            return
        try:
            pipe = get_redis_connection("default").pipeline(transaction=False)
            for worker in workers:
                pipe.set(alive_key(worker), 1, px=int(alive_seconds() * 1000))
            pipe.execute()
        except Exception:  # Redis down: the reaper then goes by the heartbeat's age alone
            logger.warning("could not mark worker alive in Redis", exc_info=True)


registry = InFlightRegistry()
