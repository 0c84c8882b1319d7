"""The headless trainer's output: a rich progress bar and the textbook's log lines.

It is one more consumer of the event stream (a callback of the event writer), so what it prints is
exactly what the TUI would show.
"""

from __future__ import annotations

import math
import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import events as ev
from .text import visible

RECURRENT_PREFIXES = ("W", "U", "b")


def _fmt(value: float) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.5g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.3e}"


def flow_line(flow: ev.Flow) -> str:
    """``[Flow] step 250: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ 3.1e-05, σ_max(U) 0.93 (1/γ = 1)``."""
    gauge = ", ".join(f"σ_max({name}) {_fmt(value)} (1/γ = {flow.inverse_gamma.get(name, 1.0):g})"
                      for name, value in flow.sigma_max.items())
    return (f"[Flow] step {flow.step}: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ {flow.ratio:.2g}, {gauge}, "
            f"σ_max(∂h_T/∂h_{{T-1}}) {_fmt(flow.jacobian_sigma_max)}")


def saturation_line(reading: ev.Saturation) -> str:
    """``[Saturation] step 250 (dev): forget_gate <0.1 12%, >0.9 40%; |h| > 0.99 3%``."""
    gates = "; ".join(f"{name} <0.1 {reading.low[name]:.0%}, >0.9 {reading.high.get(name, math.nan):.0%}"
                      for name in reading.low)
    return f"[Saturation] step {reading.step} ({reading.split}): {gates + '; ' if gates else ''}" \
           f"|h| > 0.99 {reading.hidden_saturated:.0%}"


def branch_result_line(log_path: str, change: str) -> str | None:
    """``[Test] second branch (clip 1): accuracy: 0.12``, from the end of a fork's second branch's log;
    None when that branch was not scored (it stopped or failed first)."""
    from .logs import read_log  # only after a headless fork: the whole log is read once

    finished = [event for event in read_log(log_path)[0] if isinstance(event, ev.RunFinished)]
    if not finished:
        return None
    end = finished[-1]
    name, score = ("accuracy", end.test_accuracy) if end.test_accuracy is not None else ("perplexity", end.test_perplexity)
    return None if score is None else f"[Test] second branch ({change}): {name}: {_fmt(score)}"


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Rich's default ends the process from whichever thread printed; here the event writer
        notes the failure and the run stops cleanly, with its log and last checkpoint."""
        self.quiet = True
        raise BrokenPipeError("the output was closed")


class HeadlessPrinter:
    """Prints ``[Train] epoch: 3/50, step: 17/250, loss: 41.20`` and friends as events arrive."""

    def __init__(self, stream=None, log_steps: int = 1, log_path: str | None = None):
        # markup off, control characters shown: a line may quote a file name, a prefix, a notice
        self.console = _Console(file=stream or sys.stdout, highlight=False, soft_wrap=True, markup=False)
        self.log_path = log_path  # None: the run's own log, runs/<run-id>.jsonl under its runs_dir
        self.log_steps = log_steps
        self.total_steps = 0
        self.task_name = "digits"
        self.epochs = 0
        self.norm_type = "2"
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.bar = None
        self.last_flow: ev.Flow | None = None  # printed with the next evaluation

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"on_{event.type}", None)
        if handler is not None:
            handler(event)

    def on_run_started(self, event: ev.RunStarted) -> None:
        config = event.config
        self.total_steps = event.total_steps
        self.task_name = config.get("task", "digits")
        self.epochs = config.get("epochs", 0)
        clip = f"clip {config.get('clip')} (L{config.get('clip_type')})" if config.get("clip") else "no clipping"
        self._print(f"[Run] {event.run}: {config.get('cell')} ({config.get('impl')}), "
                           f"{config.get('optimizer')} lr {config.get('lr')}, batch {config.get('batch_size')}, "
                           f"{clip}, {event.total_steps} steps; log "
                           f"{self.log_path or os.path.join(config.get('runs_dir', 'runs'), event.run + '.jsonl')}")
        self.progress.start()
        self.bar = self.progress.add_task("train", total=event.total_steps, completed=event.step, status="")

    def on_settings(self, event: ev.Settings) -> None:
        self.norm_type = event.clip_norm_type
        if event.cause == "command":
            clip = f"clip at {event.clip_max_norm:g} (L{event.clip_norm_type})" if event.clip_on else "no clipping"
            self._print(f"[Settings] step {event.step}: {clip}, lr {event.lr:g}")

    def on_step(self, event: ev.Step) -> None:
        if self.bar is not None:
            self.progress.update(self.bar, completed=event.step, status=f"loss {_fmt(event.loss)}")
        if event.step % self.log_steps and event.step != self.total_steps:
            return
        line = (f"[Train] epoch: {event.epoch}/{self.epochs}, step: {event.step}/{self.total_steps}, "
                f"loss: {_fmt(event.loss)}")
        recurrent = [name for name in event.grad_norms if name in RECURRENT_PREFIXES]
        if recurrent:  # the SRN: the textbook prints W, U and b
            line += "".join(f", {name}_grad_l2: {_fmt(event.grad_norms[name])}" for name in recurrent)
        else:
            kind = {"2": "l2", "1": "l1", "inf": "linf"}.get(self.norm_type, self.norm_type)
            line += f", grad_{kind}: {_fmt(event.total_norm)}"
        if event.clip_factor < 1.0:
            line += f" (clipped x{event.clip_factor:.3g})"
        if event.skipped:
            line += " (update skipped)"
        self._print(line)

    def on_eval(self, event: ev.Eval) -> None:
        if event.split == "test":
            score = event.accuracy if event.accuracy is not None else event.perplexity
            name = "accuracy" if event.accuracy is not None else "perplexity"
            self._print(f"[Test] {name}: {_fmt(score)}, loss: {_fmt(event.loss)}")
            return
        # the textbook's line for accuracy; a language model's score is a perplexity, and says so
        score = f"score: {_fmt(event.accuracy)}" if event.accuracy is not None else f"ppl: {_fmt(event.perplexity)}"
        self._print(f"[Evaluate] dev {score}, dev loss: {_fmt(event.loss)}"
                           + (" (best so far)" if event.is_best else ""))
        if self.last_flow is not None:  # once: the next evaluation has a newer one to tell, or none
            self._print(flow_line(self.last_flow))
            self.last_flow = None

    def on_flow(self, event: ev.Flow) -> None:
        self.last_flow = event

    def on_saturation(self, event: ev.Saturation) -> None:
        self._print(saturation_line(event))

    def on_alarm(self, event: ev.Alarm) -> None:
        if event.kind == "healthy":
            self._print(f"[Alarm] cleared at step {event.step}: {event.message}")
        else:
            self._print(f"[Alarm] {event.kind.replace('_', '-')} at step {event.step}: {event.message}")

    def on_checkpoint(self, event: ev.Checkpoint) -> None:
        if event.kind == "last":
            self._print(f"[Checkpoint] last: {event.path}")

    def on_status(self, event: ev.Status) -> None:
        if event.state in ("failed", "stopped") and event.message:
            self._print(f"[Run] {event.state}: {event.message}")

    def on_notice(self, event: ev.Notice) -> None:
        self._print(f"[{event.level.capitalize()}] {event.message}")

    def on_run_finished(self, event: ev.RunFinished) -> None:
        self.close()
        if event.reason == "stopped":
            self._print(f"[Run] stopped at step {event.step}; resume with "
                               f"rnnlab-tui train --resume {event.checkpoint}")

    def _print(self, line: str) -> None:
        self.console.print(visible(line))

    def close(self) -> None:
        if self.bar is not None:
            self.progress.stop()
            self.bar = None
