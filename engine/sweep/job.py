"""One run of a sweep, wherever it trains: a local worker, this process, or a Ray task.

The run is an ordinary training session (``session.run_session``) with its own log; what the sweep
learns of it comes from its events only: ``report(kind, **fields)`` carries ``started``, ``progress``
and ``done`` messages to the table.
"""

from __future__ import annotations

import math
import os
import socket
import time

from .. import events as ev
from .grid import Job

PROGRESS_EVERY = 0.5  # seconds between two progress messages of one run
EXPLOSIONS = ("explosion", "non_finite")  # the alarms that say a run exploded


class Progress:
    """Turns one run's events into progress messages: a step count at most every PROGRESS_EVERY
    seconds, at once whatever the table shows as a result (first explosion, evaluations, the end)."""

    def __init__(self, report):
        self.report = report
        self.last = 0.0
        self.max_grad_norm = 0.0
        self.exploded = False
        self.last_step: ev.Step | None = None  # the latest step, reported or not: the run's end says its values

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Step):
            self.on_step(event)
        elif isinstance(event, ev.RunStarted):
            self.report("progress", step=0, total=event.total_steps)
        elif isinstance(event, ev.Alarm) and event.kind in EXPLOSIONS and not self.exploded:
            self.exploded = True
            self.report("progress", exploded=True, first_explosion_step=event.step)
        elif isinstance(event, ev.Eval):
            if event.split == "dev":
                self.report("progress", step=event.step, best_dev=event.best)
            else:
                self.report("progress", test_accuracy=event.accuracy, test_perplexity=event.perplexity)
        elif isinstance(event, ev.RunFinished):
            last = {"epoch": self.last_step.epoch, "loss": self.last_step.loss} if self.last_step else {}
            self.report("progress", step=event.step, max_grad_norm=self.max_grad_norm, **last,
                        test_accuracy=event.test_accuracy, test_perplexity=event.test_perplexity,
                        best_dev=event.best_dev)

    def on_step(self, event: ev.Step) -> None:
        self.last_step = event
        if math.isfinite(event.total_norm) and event.total_norm > self.max_grad_norm:
            self.max_grad_norm = event.total_norm  # pre-clip: how far the gradient went
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.report("progress", step=event.step, epoch=event.epoch, loss=event.loss,
                        max_grad_norm=self.max_grad_norm)


def run_job(job: Job, report, *, events_path: str | None = None, stream=None) -> str:
    """Train one job and report on it; returns finished, stopped (Ctrl-C, a cancel) or failed (its
    error is the ``done`` message's, in one line: the sweep goes on with the other runs)."""
    from ..errors import describe
    from ..session import run_session

    report("started", pid=os.getpid(), host=socket.gethostname())
    started = time.monotonic()
    log = {}  # the run's own log is compressed when it ends: its final name (a chosen path stays)
    try:
        reason, path = run_session(job.config, events_path=events_path, stream=stream, callbacks=[Progress(report)])
        log = {"log": path} if events_path is None else {}
    except KeyboardInterrupt:
        reason = "stopped"
    except Exception as error:
        report("done", state="failed", error=describe(error), wall_s=time.monotonic() - started)
        return "failed"
    reason = "finished" if reason == "finished" else "stopped"
    report("done", state=reason, wall_s=time.monotonic() - started, **log)
    return reason
