"""The Ray backend: each job a Ray task with one CPU, on a local cluster or the one at ``--address``.

A task trains in a temporary folder of its worker and sends everything home through one small actor
(the board): its progress messages and its run log's text, a burst at a time, in the order it made
them. The sweep's process writes the logs, the checkpoints a finished task returns and the results,
so they land on the machine that started the sweep whatever machine trained. Tasks are not retried
(``max_retries=0``): a worker that dies is its run's failure. Ctrl-C cancels every task (a running one
stops at its next step boundary) and keeps what finished.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time

from ..config import ConfigError
from .grid import Job, log_path
from .job import run_job
from .state import CANCELLED, Sweep, watch

INSTALL_HINT = "--backend ray needs Ray, an optional extra: pip install 'rnnlab-tui[ray]'"
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # a local cluster's object store: results and logs are small


class RayUnavailable(ConfigError):
    """``--backend ray`` without Ray installed: one line, exit 2."""


def import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no question or report on start-up
    try:
        import ray
    except ImportError:
        raise RayUnavailable(INSTALL_HINT) from None
    return ray


class ProgressBoard:
    """The actor the tasks report to; the sweep takes what has arrived a few times a second."""

    def __init__(self):
        self.messages: list = []

    def put(self, messages: list) -> None:
        self.messages.extend(messages)

    def take(self) -> list:
        messages, self.messages = self.messages, []
        return messages


class Outbox:
    """A task's line home. Its run's event writer sees it as the log's second stream (``write`` and
    ``flush``, once a burst); ``report`` sends progress. Calls of one worker reach the actor in order."""

    def __init__(self, board, key: int):
        self.board, self.key = board, key
        self.text: list[str] = []

    def report(self, kind: str, **fields) -> None:
        self.board.put.remote([(kind, self.key, fields)])

    def write(self, text: str) -> None:
        self.text.append(text)

    def flush(self) -> None:
        if self.text:
            text, self.text = "".join(self.text), []
            self.board.put.remote([("log", self.key, {"text": text})])

    def close(self) -> None:
        """Send what is left and wait until the board has everything (the task's result comes after)."""
        import ray

        self.flush()
        ray.get(self.board.put.remote([]))


def _checkpoints(job: Job) -> dict[str, bytes]:
    folder = os.path.join(job.config.checkpoint_dir, job.config.run_id)
    if os.path.isabs(folder) or not os.path.isdir(folder):  # an absolute folder is written in place
        return {}
    files = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            files[name] = handle.read()
    return files


def train_point(job: Job, board) -> dict:
    """The Ray task: one run in a temporary folder, its log and progress sent home as it goes; returns
    the run's reason and its checkpoints (when their folder is relative, as the command's is)."""
    from ..session import configure_torch

    configure_torch(1)  # the task's one CPU
    outbox = Outbox(board, job.key)
    home = os.getcwd()
    files: dict[str, bytes] = {}
    reason = "failed"
    try:
        with tempfile.TemporaryDirectory(prefix="rnnlab-sweep-") as scratch:
            os.chdir(scratch)
            try:
                reason = run_job(job, outbox.report, events_path=os.path.join(scratch, "events.jsonl"),
                                 stream=outbox)
                if reason == "finished":
                    files = _checkpoints(job)
            finally:
                os.chdir(home)
    finally:
        outbox.close()
    return {"reason": reason, "files": files}


def _write_atomically(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(path + ".tmp", path)


class _Home:
    """The sweep's side: applies messages, appends log text to each run's log, settles finished tasks."""

    def __init__(self, ray, sweep: Sweep):
        self.ray, self.sweep = ray, sweep
        self.logs: dict[int, object] = {}

    def take(self, board) -> None:
        written = set()
        for kind, key, fields in self.ray.get(board.take.remote()):
            if kind == "log":
                self._log(key).write(fields["text"])
                written.add(key)
            else:
                self.sweep.apply(kind, key, fields)
        for key in written:  # on disk as it comes, so a running sweep's logs can be followed
            self.logs[key].flush()

    def _log(self, key: int):
        if key not in self.logs:
            path = log_path(self.sweep.jobs[key])
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.logs[key] = open(path, "a", encoding="utf-8")
        return self.logs[key]

    def _end_log(self, key: int) -> None:
        """The run has ended: its log is whole, compressed as a local run's is when it ends. It is
        let go only once compressed, so a Ctrl-C while compressing leaves it to ``close``."""
        from ..session import compress_log

        self.logs[key].close()
        self.sweep.rows[key]["log"] = compress_log(log_path(self.sweep.jobs[key]))
        del self.logs[key]

    def settle(self, key: int, ref) -> None:
        from ray.exceptions import RayError, TaskCancelledError, WorkerCrashedError

        if key in self.logs:
            self._end_log(key)
        try:
            result = self.ray.get(ref)
        except TaskCancelledError:
            self.sweep.settle(key, "stopped", CANCELLED)
        except WorkerCrashedError:
            self.sweep.settle(key, "failed", "the Ray worker running it died")
        except RayError as error:
            lines = str(error).strip().splitlines()
            self.sweep.settle(key, "failed", f"{type(error).__name__}: {lines[0] if lines else ''}"[:200])
        else:
            config = self.sweep.jobs[key].config
            for name, data in result["files"].items():
                _write_atomically(os.path.join(config.checkpoint_dir, config.run_id, name), data)
            self.sweep.settle(key, "failed", "the task ended without a word")  # a no-op when it said

    def close(self) -> None:
        """The sweep's end: the logs of runs not settled (the sweep stopped waiting) are whole too."""
        for key in list(self.logs):
            self._end_log(key)


def _init_options(address: str, cpus: int) -> dict:
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:  # an existing cluster keeps its own resources
        return {"address": address, **quiet}
    return {"num_cpus": cpus or None, "include_dashboard": False, "object_store_memory": OBJECT_STORE_BYTES, **quiet}


def run_ray(sweep: Sweep, update, address: str = "", cpus: int = 0) -> None:
    """Start (or join) the cluster, run every job as a task, shut a cluster started here down again."""
    ray = import_ray()
    started = time.monotonic()
    owned = not ray.is_initialized()
    if owned:
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        ray.init(**_init_options(address, cpus))
        # Ray's core worker puts in its own SIGTERM handler (a native stack dump, then abort): the
        # sweep's come back, which stop it with its results written
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    sweep.startup_s = time.monotonic() - started
    try:
        _drive(ray, sweep, update)
    finally:
        if owned:
            ray.shutdown()


def _drive(ray, sweep: Sweep, update) -> None:
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    task = ray.remote(num_cpus=1, max_retries=0)(train_point)
    refs = {task.remote(job, board): job.key for job in sweep.jobs.values()}
    home = _Home(ray, sweep)

    def poll() -> bool:
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.2)
        home.take(board)  # a task's last messages are on the board before its result is ready
        for ref in done:  # let go once settled: a Ctrl-C meanwhile leaves it to the next poll
            home.settle(refs[ref], ref)
            del refs[ref]
        update(sweep)
        return bool(refs)

    def cancel() -> None:
        for ref in refs:
            ray.cancel(ref)

    try:
        watch(sweep, poll, cancel)
        home.take(board)
    finally:
        home.close()
