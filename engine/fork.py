"""A run forked at a step into two branches trained in lockstep.

The run goes on as the first branch. The second is a deep copy of it at the fork (weights, optimiser
state, the task's carried state, the alarm watch, the rewind snapshots) with one setting changed; after
every step of the first branch it takes a step on the same batch, and it evaluates when the first
does. Whatever differs between the two from then on is caused by that one setting: same weights, same
optimiser state, same batches. Each branch emits to its own writer and log, tagged with its own run id,
so one event stream can carry both and ``watch`` replays the two logs together.

Pause, step and the speed cap act on both because one loop steps both (the second branch's log says
so too); a rewind rewinds each to its own snapshot; the other commands (clip, lr, gates, console)
steer the first branch.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import replace

from . import checkpoint as ckpt
from . import commands as cmd
from . import events as ev
from .config import ConfigError
from .monitor import GradientNorms


def check_fork_step(config, fork_at: tuple[int, cmd.Fork] | None, resumed_at: int = 0) -> None:
    """``train --fork-at STEP`` refused before anything is written when the run ends at or before STEP
    (its steps are its epochs times the batches of its training set): such a fork would train nothing;
    and when a resumed run's checkpoint is already past STEP."""
    if fork_at is None:
        return
    if fork_at[0] < resumed_at:
        raise ConfigError(f"--fork-at {fork_at[0]}: the checkpoint resumed is at step {resumed_at}, past it; "
                          f"fork at {resumed_at} or later, or fork the run that made the checkpoint")
    import torch

    from .tasks import make_task

    step = fork_at[0]
    steps_per_epoch = make_task(config, torch.device(config.device)).steps_per_epoch
    total = config.epochs * steps_per_epoch
    if step >= total:
        epochs = f"{config.epochs} epoch" + ("s" if config.epochs != 1 else "")
        raise ConfigError(f"--fork-at {step}: the run ends at step {total} ({epochs} of {steps_per_epoch} steps), "
                          f"so the fork must come before it" + (f" (1 to {total - 1})" if total > 1 else ": no step does"))


def steer_branch(runner, command: cmd.Command):
    """The runner's second branch after ``command``: started by a fork, steered by the commands that
    act on both (``Branch.apply``)."""
    if not isinstance(command, cmd.Fork):
        runner.branch.apply(command)
        return runner.branch
    open_writer = getattr(runner, "open_branch_writer", None)  # set where the run's logs are opened
    if runner.branch is not None or open_writer is None:
        runner.notice("this run is forked already" if runner.branch is not None else
                      "this run cannot fork: it has no place for a second log", "error")
        return runner.branch
    return Branch(runner, command, open_writer(f"{runner.run_id}-b"))


def changed_settings(settings: ev.Settings, fork: cmd.Fork) -> dict:
    """The Settings fields the second branch changes."""
    if fork.setting == "lr":
        return {"lr": float(fork.value)}
    if fork.value is None:
        return {"clip_on": False}
    return {"clip_on": True, "clip_max_norm": float(fork.value)}


class Branch:
    """The second branch of a forked runner: ``follow`` after each of the first branch's steps."""

    def __init__(self, runner, fork: cmd.Fork, writer):
        """``writer`` is the second branch's own event writer (its log, and the stream if there is one)."""
        self.fork = fork
        self.finished = False
        open_writer = getattr(runner, "open_branch_writer", None)
        run_id = f"{runner.run_id}-b"
        changes = changed_settings(runner.settings, fork)
        # a deep copy of everything the runner trains and watches; what it talks to is not copied
        memo = {id(runner.commands): None, id(runner.emit_event): writer.emit,
                id(runner.log_error): (lambda: writer.error), id(open_writer): None}
        branch = copy.deepcopy(runner, memo)
        first_emit = runner.emit_event

        def emit_both(event: ev.Event) -> None:  # the one loop pauses and resumes both: so say both logs
            first_emit(event)
            if type(event) is ev.Status and event.state in ("paused", "running"):
                branch._set_paused(event.state == "paused")
            elif type(event) is ev.RunFinished:  # the run has ended: so does its second branch
                self.finish(event.reason)

        runner.emit_event = emit_both
        branch.gradient_norms = GradientNorms(branch.model)  # its views must be of the copy's gradients
        branch.branch = None
        branch.run_id = run_id
        branch.best_path = runner.best_path.replace(runner.run_id, run_id)
        branch.last_path = runner.last_path.replace(runner.run_id, run_id)
        branch.config = replace(runner.config, run_id=run_id, **_config_changes(changes, runner.config))
        for group in branch.optimizer.param_groups:
            group["lr"] = changes.get("lr", runner.settings.lr)
        if os.path.isfile(runner.best_path):  # the best weights so far are their shared history
            ckpt.save(branch.best_path, ckpt.load(runner.best_path))
        self.runner = branch
        self.first = runner
        # its log starts as a run's does, and says where it came from
        branch.settings = replace(branch.settings, **changes)
        _announce(branch, forked_from=runner.run_id, fork_step=runner.step)
        branch.emit(ev.Settings, **_fields(branch.settings), cause="fork")
        branch.emit(ev.Status, state="paused" if runner.paused else "running")
        branch._emit_gates()
        runner.notice(f"forked at step {runner.step}: {run_id} trains beside this run with {fork.describe()}")

    def follow(self, batch, evaluate: bool) -> None:
        """One step on the first branch's batch; its evaluation when the first branch evaluated."""
        branch = self.runner
        branch.epoch, branch.next_batch = self.first.epoch, self.first.next_batch  # its Step says this epoch
        branch._train_step(batch)
        if evaluate:
            branch._evaluate()

    def apply(self, command: cmd.Command) -> None:
        """The commands that act on both branches."""
        branch = self.runner
        if isinstance(command, cmd.SetSpeed):
            branch._apply(command)  # the shared loop obeys the first branch's cap; this log says it too
        elif isinstance(command, cmd.Rewind):
            branch._rewind()

    def finish(self, reason: str) -> None:
        """Its last checkpoint, test score and end, as the first branch's (finished, stopped or failed)."""
        if self.finished:
            return
        self.finished = True
        branch = self.runner
        branch.epoch, branch.next_batch = self.first.epoch, self.first.next_batch
        branch._finish(reason)


def _announce(branch, **origin) -> None:
    """The second branch's run_started: the run's, with its own config and where it branched off."""
    config, task = branch.config, branch.task
    shapes = {name: list(t.shape) for name, t in branch.model.textbook_parameters().items()}
    branch.emit(ev.RunStarted, config={**config.to_dict(), **origin}, parameters=shapes, dataset=task.dataset_sizes,
                device=str(branch.device), total_steps=config.epochs * task.steps_per_epoch,
                steps_per_epoch=task.steps_per_epoch, vocabulary=list(task.vocabulary),
                settings=_fields(branch.settings))


def _config_changes(changes: dict, config) -> dict:
    """The config fields that say how the second branch trains, so its log reads as its own run."""
    fields = {}
    if "lr" in changes:
        fields["lr"] = changes["lr"]
    if "clip_on" in changes:
        fields["clip"] = changes.get("clip_max_norm", config.clip or 20.0) if changes["clip_on"] else None
    return fields


def _fields(settings: ev.Settings) -> dict:
    return {"clip_on": settings.clip_on, "clip_max_norm": settings.clip_max_norm,
            "clip_norm_type": settings.clip_norm_type, "lr": settings.lr, "speed": settings.speed}


class ForkAt:
    """Commands for a run that forks at a given step (``train --fork-at STEP --fork clip=1``): those of
    ``commands`` (None: nobody steers the run), and the fork once the run has taken ``step`` steps."""

    def __init__(self, commands, step: int, fork: cmd.Fork, current_step):
        self.commands = commands
        self.step = step
        self.fork = fork
        self.current_step = current_step  # the runner's step, read between two steps
        self.sent = False

    def poll(self) -> list[cmd.Command]:
        commands = self.commands.poll() if self.commands is not None else []
        if not self.sent and self.current_step() >= self.step:
            self.sent = True
            commands.append(self.fork)
        return commands

    def wait(self, timeout: float) -> list[cmd.Command]:
        if self.commands is None:
            time.sleep(timeout)
            return self.poll()
        return self.commands.wait(timeout) + self.poll()
