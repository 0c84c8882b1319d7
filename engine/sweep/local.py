"""The local backend: spawned worker processes, each with its own pipe to the sweep's process.

A worker says it is ready, gets one job (or None: no more), reports on it through the same pipe and
says it is ready again. Nothing is shared between workers, so a worker killed at any moment breaks
only its own pipe (a queue shared by all would be left locked by it and stop the others).

Each worker is its own process group, so a Ctrl-C at the terminal reaches only the sweep's process,
which then stops the workers itself: no worker gets another job, and each running run gets one SIGINT,
stops at its next step boundary and keeps its log and last checkpoint. A worker starts with SIGINT
ignored (importing torch takes seconds, before it is its own process group) and heeds it once it
can stop cleanly: until it says it is ready it has nothing to stop. A worker that dies is reported
as its run's failure (the run is not tried again) and a fresh worker takes its place for the jobs left.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait as wait_for_pipes

from ..session import configure_torch
from .job import run_job
from .state import Sweep, watch


def _worker(pipe, threads: int) -> None:
    """A worker process: ask for a job, run it, again, until there is none or the sweep is stopped."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    configure_torch(threads)
    sending = threading.Lock()  # reports come from the training loop's thread and its event writer's

    def send(message) -> None:
        with sending:
            pipe.send(message)

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored until now (_Pool._start)
        while True:
            send(("ready", None, {}))
            job = pipe.recv()
            if job is None:
                return

            def report(kind, **fields):
                send((kind, job.key, fields))

            if run_job(job, report) == "stopped":
                return
    except (KeyboardInterrupt, EOFError, OSError):  # Ctrl-C between two jobs, or the sweep is gone
        return


def run_here(sweep: Sweep, update) -> None:
    """The jobs one after another in this process (``--sequential``)."""
    configure_torch(sweep.options["threads"])
    for job in sweep.jobs.values():
        def report(kind, **fields):
            sweep.apply(kind, job.key, fields)
            update(sweep)

        if run_job(job, report) == "stopped":
            sweep.interrupted = True
            return


class _Pool:
    def __init__(self, sweep: Sweep, workers: int):
        self.sweep = sweep
        self.context = multiprocessing.get_context("spawn")
        self.queued = list(sweep.jobs.values())  # not yet given to a worker
        self.stopping = False
        self.workers: list[tuple] = [self._start() for _ in range(workers)]  # (process, pipe)
        self.given: dict[int, int] = {}  # worker pid -> the key of the job it was given
        self.buried: set[int] = set()  # pids of the dead workers already reported

    def _start(self) -> tuple:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(theirs, self.sweep.options["threads"]),
                                       name="sweep-worker", daemon=True)
        # the worker inherits SIGINT ignored; a Ctrl-C in these few milliseconds is lost here too
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, handler)
        theirs.close()
        return process, mine

    def take_messages(self, timeout: float) -> None:
        """Apply every message that has come, waiting up to ``timeout`` for the first."""
        pipes = {pipe: process for process, pipe in self.workers if not pipe.closed}
        for pipe in wait_for_pipes(list(pipes), timeout):
            try:
                while pipe.poll():
                    self._handle(pipes[pipe], pipe, *pipe.recv())
            except (EOFError, OSError):  # the worker is gone; bury_dead says how
                pipe.close()

    def _handle(self, process, pipe, kind: str, key, fields: dict) -> None:
        if kind != "ready":
            self.sweep.apply(kind, key, fields)
            return
        job = self.queued.pop(0) if self.queued and not self.stopping else None
        if job is not None:
            self.given[process.pid] = job.key
        pipe.send(job)

    def bury_dead(self) -> None:
        """A worker gone with a non-zero exit: its run failed; another worker takes the jobs left."""
        for index, (process, pipe) in enumerate(self.workers):
            if process.is_alive() or process.exitcode in (0, None) or process.pid in self.buried:
                continue
            self.buried.add(process.pid)
            code = process.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            if process.pid in self.given:
                self.sweep.settle(self.given[process.pid], "failed", f"the worker process died ({how})")
            pipe.close()
            if self.queued and not self.stopping:
                self.workers[index] = self._start()

    def alive(self) -> bool:
        return any(process.is_alive() for process, _ in self.workers)

    def interrupt(self) -> None:
        """Ctrl-C: no job is given out any more, and each running run is asked to stop."""
        self.stopping = True
        for process, _ in self.workers:
            if process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        for process, pipe in self.workers:
            process.join(timeout=1.0)
            if process.is_alive():
                process.terminate()
            pipe.close()


def run_pool(sweep: Sweep, update) -> None:
    pool = _Pool(sweep, sweep.options["workers"])

    def poll() -> bool:
        pool.take_messages(0.2)
        pool.bury_dead()
        update(sweep)
        if pool.alive():
            return True
        pool.take_messages(0)
        pool.bury_dead()  # one gone since the look above; a fresh worker may take the jobs left
        return pool.alive()

    try:
        watch(sweep, poll, pool.interrupt)
    finally:
        pool.close()
