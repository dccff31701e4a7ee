"""One job at a time per device: a FIFO queue served by one worker thread.

    queue = DeviceQueue("cpu")
    job = queue.submit(work, kind="frames")      # work(job) -> result; runs on the worker thread
    job.wait()                                    # -> the result, or raises the job's error
    queue.close()

A job's ``state`` goes queued -> running -> done | error; ``position`` is its place in the queue (0: running or
finished). ``work`` may call ``job.report(done, total)`` to publish progress (frames).
"""
import itertools
import queue
import sys
import threading
import time
import traceback

QUEUED, RUNNING, DONE, ERROR = "queued", "running", "done", "error"


class Job:
    """A unit of work on the device queue; thread-safe reads of state, progress, result and error."""

    def __init__(self, job_id, work, kind, owner):
        self.id = job_id
        self.kind = kind
        self.state = QUEUED
        self.done = 0
        self.total = 0
        self.result = None
        self.error = None          # a one-line message for the page
        self.exception = None
        self.created = time.time()
        self.finished_at = None
        self._work = work
        self._owner = owner
        self._finished = threading.Event()

    def report(self, done, total):
        """Progress: ``done`` of ``total`` units (frames) finished."""
        self.done, self.total = int(done), int(total or 0)

    @property
    def position(self):
        """1-based place among the queued jobs (0 once it runs or has finished)."""
        return self._owner.position(self) if self.state == QUEUED else 0

    def wait(self, timeout=None):
        """Block until the job finished; return its result or raise its exception (TimeoutError on timeout)."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.state}")
        if self.exception is not None:
            raise self.exception
        return self.result

    def status(self):
        """A JSON-ready dict: id, kind, state, position, done, total, error."""
        return {"id": self.id, "kind": self.kind, "state": self.state, "position": self.position,
                "done": self.done, "total": self.total, "error": self.error}


class DeviceQueue:
    """Runs submitted jobs one after the other on one worker thread (one per device).

    ``describe_error(exception)`` turns a failure into the one-line message stored in ``job.error`` (None: an
    unexpected failure, whose traceback goes to stderr and whose message names the exception type only).
    """

    def __init__(self, name="device", describe_error=None):
        self.name = name
        self.describe_error = describe_error or (lambda error: None)
        self._queue = queue.Queue()
        self._waiting = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._serve, name=f"upr-app-{name}", daemon=True)
        self._thread.start()

    def submit(self, work, kind="job"):
        """Queue ``work(job)``; returns the :class:`Job` at once."""
        with self._lock:
            job = Job(f"{kind}-{next(self._ids)}", work, kind, self)
            self._waiting.append(job)
        self._queue.put(job)
        return job

    def position(self, job):
        with self._lock:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return 0

    def __len__(self):
        """Jobs waiting (not counting the one running)."""
        with self._lock:
            return len(self._waiting)

    def _serve(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._waiting.remove(job)
                job.state = RUNNING
            try:
                job.result = job._work(job)
                job.state = DONE
            except BaseException as error:   # noqa: BLE001 - a failed job must not stop the worker
                job.exception = error
                message = self.describe_error(error)
                if message is None:
                    traceback.print_exception(error, file=sys.stderr)
                    message = f"internal error ({type(error).__name__}); the server log has the details"
                job.error = message
                job.state = ERROR
            finally:
                job.finished_at = time.time()
                job._finished.set()

    def close(self, timeout=5.0):
        """Stop the worker after the queued jobs."""
        self._queue.put(None)
        self._thread.join(timeout)
