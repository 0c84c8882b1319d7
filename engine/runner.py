"""The training loop (NNDL's RunnerV3): train, log every step, evaluate, keep the best checkpoint.

The loop is flat and talks to the world only through ``emit`` (events out) and ``commands`` (commands
in, applied between two steps). It never formats text for a screen.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import replace

import torch

from . import checkpoint as ckpt
from . import commands as cmd
from . import events as ev
from . import instruments
from .config import TrainConfig, new_run_id
from .fork import steer_branch
from .models import build_model
from .monitor import AlarmWatch, GradientNorms, clip_factor
from .optim import make_optimizer
from .stream import LogWriteError
from .tasks import make_task

SNAPSHOT_EVERY = 25  # steps between two snapshots of healthy weights for `rewind`
SNAPSHOTS_KEPT = 5
RATE_WINDOW = 20  # steps whose start times give the steps/s reported


class Runner:
    def __init__(self, config: TrainConfig, emit, commands=None, resume: dict | None = None,
                 monitor: bool = True, instruments: bool = True, log_error=lambda: ""):
        self.config = config
        self.emit_event = emit
        self.commands = commands  # a CommandReader, or None when nobody steers the run
        self.monitor = monitor  # False: the textbook's bare loop, to measure what watching costs
        self.instruments = instruments  # the gradient flow and gate saturation (engine/instruments.py)
        self.log_error = log_error  # the event writer's failure ("" while all is well): checked between steps
        self.run_id = config.run_id or new_run_id(config)
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.task = make_task(config, self.device)
        self.model = build_model(config, len(self.task.vocabulary)).to(self.device)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(config.optimizer, self.trainable, config.lr)
        # how training is set up now; commands replace it between two steps
        self.settings = ev.Settings(clip_on=config.clip is not None, clip_max_norm=config.clip or 20.0,
                                    clip_norm_type=config.clip_type, lr=config.lr, speed=config.speed)
        self.paused = False
        self.steps_left = -1  # after a `step n` command: steps to run before pausing again
        self.stop_requested = False
        self.gates_input = ""  # the heatmaps' input: "" = the probe, else the console's last
        self.weights_step: int | None = None  # after :best, the best checkpoint's step: the heatmaps' caption
        self.branch = None  # after a fork: the second branch, stepped after each step (engine/fork.py)
        # progress: (epoch, next_batch) always names the next batch to run, which a checkpoint resumes
        self.step, self.epoch, self.next_batch = 0, 1, 0
        self.best_score: float | None = None
        self.best_path = os.path.join(config.checkpoint_dir, self.run_id, "best.pt")
        self.last_path = os.path.join(config.checkpoint_dir, self.run_id, "last.pt")
        self.gradient_norms = GradientNorms(self.model)
        self.alarms = AlarmWatch()
        self.last_alarm_step = -1
        # the TUI's default: wait at the first explosion's step for an answer (a viewer's pause would be late)
        self.pause_at_explosion = config.pause_on_alarm and config.task == "digits" and commands is not None
        self.snapshots: deque = deque(maxlen=SNAPSHOTS_KEPT)  # (step, parameters, optimizer state)
        self.started = time.monotonic()
        self.step_starts: deque = deque(maxlen=RATE_WINDOW)  # when the last steps started
        self.steps_per_s = 0.0
        self.next_slot = 0.0  # when the next step may start under a speed cap
        self.last_flow = -math.inf  # when the last measured step's gradient flow was measured
        if resume is not None:
            self._restore_checkpoint(resume)

    # --- events ---------------------------------------------------------

    def emit(self, cls, step: int | None = None, **fields) -> None:  # at the current step unless told another
        step = self.step if step is None else step
        self.emit_event(cls(run=self.run_id, step=step, t=round(time.monotonic() - self.started, 4), **fields))

    def notice(self, message: str, level: str = "info") -> None:
        self.emit(ev.Notice, level=level, message=message)

    def _change_settings(self, cause: str = "command", **changes) -> None:
        self.settings = replace(self.settings, **changes)
        self.emit(ev.Settings, **_settings_fields(self.settings), cause=cause)

    # --- the loop -------------------------------------------------------

    def run(self) -> str:
        config, task = self.config, self.task
        shapes = {name: list(t.shape) for name, t in self.model.textbook_parameters().items()}
        self.emit(ev.RunStarted, config=config.to_dict(), parameters=shapes, dataset=task.dataset_sizes,
                  device=str(self.device), total_steps=config.epochs * task.steps_per_epoch,
                  steps_per_epoch=task.steps_per_epoch, vocabulary=list(task.vocabulary),
                  settings=_settings_fields(self.settings))
        self._change_settings("resume" if self.step else "start")
        self.emit(ev.Status, state="running")
        self._emit_gates()
        self._take_snapshot()
        if self.monitor and self.instruments:
            instruments.warm_up()
        reason = "finished"
        try:
            while self.epoch <= config.epochs:
                if self.next_batch == 0:  # a resumed run carries the state of its epoch from the checkpoint
                    task.start_epoch()
                for index, batch in enumerate(task.batches(self.epoch)):
                    if index < self.next_batch:
                        continue  # resuming in the middle of an epoch
                    self._between_steps()  # commands, pause, the speed cap, a failing log
                    self._train_step(batch)
                    self.next_batch = index + 1
                    # --- evaluation and checkpoints ---
                    last_of_epoch = index == task.steps_per_epoch - 1
                    due = self.step % config.eval_steps == 0 if config.eval_steps else last_of_epoch
                    if evaluate := due or (last_of_epoch and self.epoch == config.epochs):
                        self._evaluate()
                    if self.branch is not None:  # a forked run: its second branch, on the same batch
                        self.branch.follow(batch, evaluate)
                    if self.steps_left > 0:
                        self.steps_left -= 1
                        if self.steps_left == 0:
                            self._set_paused(True)
                self.epoch, self.next_batch = self.epoch + 1, 0
            self._between_steps()  # a stop or a failing log that came with the last step
        except _Stop:
            reason = "stopped"
        except Exception as error:  # the run failed: say so, keep the log and the last weights
            message = str(error) if isinstance(error, LogWriteError) else f"{type(error).__name__}: {error}"
            self.emit(ev.Status, state="failed", message=message)
            self._save_last()
            self.emit(ev.RunFinished, reason="failed", best_dev=self.best_score, checkpoint=self.last_path)
            raise
        return self._finish(reason)

    def _train_step(self, batch) -> None:
        settings = self.settings
        self.step_starts.append(time.monotonic())
        # --- gradient flow through time: the equations on this batch, before its update (measured steps) ---
        flow = None
        step_seconds = 1.0 / self.steps_per_s if self.steps_per_s else 0.0
        if self.monitor and self.instruments and instruments.flow_due(settings.speed, time.monotonic(), self.last_flow, step_seconds):
            self.last_flow = time.monotonic()
            flow = instruments.measure_flow(self.model, self.task, batch)
        # --- forward and backward ---
        self.optimizer.zero_grad(set_to_none=False)
        loss = self.task.train_loss(self.model, batch)
        loss.backward()
        self.step += 1
        if not self.monitor:  # the textbook's loop, nothing watched
            if settings.clip_on:
                torch.nn.utils.clip_grad_norm_(self.trainable, settings.clip_max_norm,
                                               norm_type=float(settings.clip_norm_type))
            self.optimizer.step()
            return
        # --- every gradient's norm (one batched computation, one transfer) ---
        norms = self.gradient_norms.measure(settings.clip_norm_type)
        loss_value = loss.item()
        # --- clip and step: a non-finite update would ruin the weights, so it is skipped ---
        skipped = not (math.isfinite(loss_value) and math.isfinite(norms.total))
        factor = 1.0
        if not skipped:
            if settings.clip_on:  # clip_grad_norm_'s arithmetic, on the total measured above
                factor = clip_factor(norms.total, settings.clip_max_norm)
                if factor < 1.0:
                    self.gradient_norms.scale(factor)
            self.optimizer.step()
        # --- log ---
        starts = self.step_starts  # start to start: under a speed cap it reads the cap, whatever a step takes
        if len(starts) > 1:
            self.steps_per_s = (len(starts) - 1) / max(starts[-1] - starts[0], 1e-9)
        elif not self.steps_per_s:  # the run's first step: its own time, or the cap (after a pause: the rate before it)
            self.steps_per_s = min(1.0 / max(time.monotonic() - starts[0], 1e-9), settings.speed or math.inf)
        self.emit(ev.Step, epoch=self.epoch, loss=loss_value, grad_norms=norms.per_parameter,
                  total_norm=norms.total, clip_factor=factor, skipped=skipped, steps_per_s=round(self.steps_per_s, 2))
        if flow is not None:
            self.emit(ev.Flow, **flow)
        for report in self.alarms.observe(loss_value, norms.per_parameter):
            if report.kind != "healthy":
                self.last_alarm_step = self.step
            self.emit(ev.Alarm, kind=report.kind, parameter=report.parameter, value=report.value,
                      ratio=report.ratio, median=report.median, message=report.message)
            if report.kind == "explosion" and self.pause_at_explosion:
                self.pause_at_explosion = False
                self._set_paused(True)
                self._emit_gates()  # the pause shows the hidden state as the explosion left it
        if not self.alarms.active and self.step % SNAPSHOT_EVERY == 0:
            self._take_snapshot()

    def _evaluate(self) -> None:
        score, loss = self.task.evaluate(self.model, "dev")
        better = self.best_score is None or (score > self.best_score if self.task.higher_is_better
                                             else score < self.best_score)
        if better and math.isfinite(score):
            self.best_score = score
            self._save(self.best_path, "best", score)
        self.emit(ev.Eval, split="dev", loss=loss, is_best=better, best=self.best_score,
                  **{self.task.score_name: score})
        if self.monitor and self.instruments:
            self.emit(ev.Saturation, split="dev",
                      **instruments.measure_saturation(self.model, self.task.sequences("dev")))
        self._emit_gates()

    def _finish(self, reason: str) -> str:
        self._save_last()
        fields = {}
        if os.path.exists(self.best_path):  # the test split, scored by the best dev weights
            best = ckpt.load(self.best_path)
            current = ckpt.snapshot_parameters(self.model)
            self.model.load_textbook_parameters(best["parameters"])
            score, loss = self.task.evaluate(self.model, "test")
            self.model.load_textbook_parameters(current)
            self.emit(ev.Eval, split="test", loss=loss, **{self.task.score_name: score})
            fields = {f"test_{self.task.score_name}": score}
        self.emit(ev.Status, state="finished" if reason == "finished" else "stopped")
        self.emit(ev.RunFinished, reason=reason, best_dev=self.best_score, checkpoint=self.last_path, **fields)
        return reason

    # --- checkpoints and snapshots ---------------------------------------

    def _payload(self) -> dict:
        return {"config": self.config.to_dict(), "parameters": ckpt.snapshot_parameters(self.model),
                "optimizer": self.optimizer.state_dict(), "impl": self.config.impl, "run_id": self.run_id,
                "step": self.step, "epoch": self.epoch, "batch": self.next_batch, "steps_per_epoch": self.task.steps_per_epoch,
                "best": self.best_score, "settings": _settings_fields(self.settings), "alarms": self.alarms.state_dict(),
                "carried_state": self.task.carried_state(), **self.task.checkpoint_extra()}

    def _save(self, path: str, kind: str, score: float | None = None) -> None:
        ckpt.save(path, self._payload())
        self.emit(ev.Checkpoint, path=path, kind=kind, score=score)

    def _save_last(self) -> None:
        self._save(self.last_path, "last", self.best_score)

    def _restore_checkpoint(self, payload: dict) -> None:
        self.model.load_textbook_parameters(payload["parameters"])
        if payload.get("impl") == self.config.impl and payload.get("optimizer"):
            self.optimizer.load_state_dict(payload["optimizer"])
        self.settings = ckpt.resumed_settings(self.settings, self.config, payload)
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.lr
        self.step, self.epoch = int(payload.get("step", 0)), int(payload.get("epoch", 1))
        self.next_batch = int(payload.get("batch", 0))
        if self.next_batch >= self.task.steps_per_epoch:
            self.epoch, self.next_batch = self.epoch + 1, 0
        self.best_score = payload.get("best")
        earlier_best = os.path.join(os.path.dirname(self.config.resume), "best.pt") if self.config.resume else ""
        if os.path.isfile(earlier_best):  # the run goes on: so does its best checkpoint, scored on test at the end
            ckpt.save(self.best_path, ckpt.load(earlier_best))
        self.alarms.load_state_dict(payload.get("alarms") or {})
        self.task.restore_carried_state(payload.get("carried_state"))

    def _take_snapshot(self) -> None:
        self.snapshots.append((self.step, ckpt.snapshot_parameters(self.model), ckpt.copy_state(self.optimizer.state_dict())))

    def _rewind(self) -> None:
        healthy = [s for s in self.snapshots if s[0] < self.last_alarm_step] if self.last_alarm_step >= 0 else []
        chosen = healthy[-1] if healthy else (self.snapshots[-1] if self.snapshots else None)
        if chosen is None:
            self.notice("nothing to rewind to yet", "warning")
            return
        step, parameters, optimizer_state = chosen
        self.model.load_textbook_parameters(parameters)  # copies in: the snapshot stays as it was taken
        self.optimizer.load_state_dict(optimizer_state)  # copies in too
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.lr
        if self.alarms.active:  # the alarm's story ends here
            self.emit(ev.Alarm, kind="healthy", message=f"rewound to the weights of step {step}")
        else:
            self.notice(f"rewound to the weights of step {step}")
        self.alarms.reset()
        self.last_alarm_step = -1
        self._change_settings("rewind")
        self._emit_gates()  # the heatmaps of the weights rewound to

    # --- between two steps: commands, pause, speed ------------------------

    def _between_steps(self) -> None:
        """Apply the commands that arrived, wait while paused and for the speed cap; raise _Stop when
        the run must end here (a stop command, Ctrl-C, or a log that can no longer be written)."""
        self._apply_all(self.commands.poll() if self.commands else [])
        while self.paused and self.commands is not None and not self.stop_requested:
            self._apply_all(self.commands.wait(0.1))
        if self.settings.speed > 0 and not self.stop_requested:
            self.next_slot = max(self.next_slot + 1.0 / self.settings.speed, time.monotonic())
            while not self.stop_requested and (remaining := self.next_slot - time.monotonic()) > 0:
                if self.commands is None:
                    time.sleep(remaining)
                else:
                    self._apply_all(self.commands.wait(min(remaining, 0.05)))
                if self.paused:  # a pause that came while waiting for the cap
                    return self._between_steps()
        error = self.log_error()
        if error:
            raise LogWriteError(error)
        if self.stop_requested:
            raise _Stop

    def _apply_all(self, commands) -> None:
        for command in commands:
            self._apply(command)

    def _set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            if not paused:  # time spent paused is not training: steps/s starts again (a fork's branch too)
                self.step_starts.clear()
            self.emit(ev.Status, state="paused" if paused else "running")

    def _apply(self, command: cmd.Command) -> None:
        if self.branch is not None or isinstance(command, cmd.Fork):  # start or steer a second branch
            self.branch = steer_branch(self, command)
        if isinstance(command, cmd.Stop):
            self.request_stop()
        elif isinstance(command, (cmd.Pause, cmd.Resume)):
            self.steps_left = -1
            self._set_paused(isinstance(command, cmd.Pause))
        elif isinstance(command, cmd.StepCommand):
            self.steps_left = max(1, int(command.n))
            self._set_paused(False)
        elif isinstance(command, cmd.SetClip):
            self._set_clip(command)
        elif isinstance(command, cmd.SetLr):
            if not (isinstance(command.lr, (int, float)) and math.isfinite(command.lr) and command.lr > 0):
                self.notice(f"lr must be a positive number, not {command.lr}", "error")
                return
            for group in self.optimizer.param_groups:
                group["lr"] = float(command.lr)
            self._change_settings(lr=float(command.lr))
        elif isinstance(command, cmd.SetSpeed):
            if not (math.isfinite(command.steps_per_s) and command.steps_per_s >= 0):
                self.notice(f"speed must be 0 (unlimited) or a positive steps/s, not {command.steps_per_s}", "error")
                return
            self._change_settings(speed=float(command.steps_per_s))
        elif isinstance(command, cmd.Rewind):
            self._rewind()
        elif isinstance(command, cmd.GatesCommand):  # "" refreshes the heatmaps of the input shown
            if self._emit_gates(command.input or self.gates_input):
                self.gates_input = command.input or self.gates_input  # later refreshes keep showing it
        elif isinstance(command, cmd.Predict):
            try:
                self.emit(ev.Prediction, **self.task.predict(self.model, command.input))
            except ValueError as error:
                self.notice(str(error), "error")
        elif isinstance(command, cmd.Generate):
            generate = getattr(self.task, "generate", None)
            if generate is None:
                self.notice("generation is for the language-model task; type digits to predict their sum", "error")
                return
            generate(self.model, command, self.emit, self.notice)

    def _set_clip(self, command: cmd.SetClip) -> None:
        if command.max_norm is not None and not (math.isfinite(command.max_norm) and command.max_norm > 0):
            self.notice(f"max_norm must be positive, not {command.max_norm}", "error")
            return
        if command.norm_type is not None and command.norm_type not in ("1", "2", "inf"):
            self.notice(f"norm type must be 1, 2 or inf, not {command.norm_type}", "error")
            return
        changes = {"clip_on": bool(command.on)}
        if command.max_norm is not None:
            changes["clip_max_norm"] = float(command.max_norm)
        if command.norm_type is not None:
            changes["clip_norm_type"] = command.norm_type
        self._change_settings(**changes)

    def _emit_gates(self, text: str | None = None) -> bool:
        """Heatmaps of the console's last input (or the probe) with the current weights."""
        text = self.gates_input if text is None else text
        try:
            tokens, matrices = self.task.gates(self.model, text)
        except ValueError as error:
            self.notice(str(error), "error")
            return False
        self.emit(ev.Gates, step=self.weights_step, tokens=tokens, cell=self.config.cell, matrices=matrices,
                  request=text or "probe")
        return True

    def end_interrupted(self) -> None:
        """A second Ctrl-C broke into a step: the last checkpoint, and the log ends as a stopped run."""
        self._save_last()
        self.emit(ev.Status, state="stopped", message="interrupted")
        self.emit(ev.RunFinished, reason="stopped", best_dev=self.best_score, checkpoint=self.last_path)

    def request_stop(self) -> None:
        """Stop at the next step boundary (a command, or a signal handler)."""
        self.stop_requested = True
        self.paused = False


class _Stop(Exception):
    pass


def _settings_fields(settings: ev.Settings) -> dict:
    return {"clip_on": settings.clip_on, "clip_max_norm": settings.clip_max_norm,
            "clip_norm_type": settings.clip_norm_type, "lr": settings.lr, "speed": settings.speed}
