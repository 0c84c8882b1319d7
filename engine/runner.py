"""The training loop (NNDL's RunnerV3): train, log every step, evaluate, keep the best checkpoint.

The loop is flat and talks to the world only through ``emit`` (events out) and ``commands`` (commands
in, applied at step boundaries). It never formats text for a screen.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque

import torch

from . import checkpoint as ckpt
from . import events as ev
from .config import TrainConfig
from .memory import keep_freed_memory
from .models import build_model
from .monitor import AlarmWatch, GradientNorms, clip_factor, copy_state
from .stream import StepRows
from .tasks import make_task

FRAME_S = 0.08  # the longest a step's event waits to leave with the next ones (seconds)
# events of the running loop that may wait for the Step events before them (they leave together)
_RIDE_ALONG = (ev.Eval, ev.Gates, ev.Checkpoint)


def new_run_id(config: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{config.cell}-{config.task}-{stamp}-{os.getpid() % 100000:05d}"


def make_optimizer(config: TrainConfig, model: torch.nn.Module):
    """SGD or Adam (engine/optim.py: torch's kernels, without torch.optim's slow first call)."""
    from .optim import make_optimizer as optimizer_for

    return optimizer_for(config.optimizer, [p for p in model.parameters() if p.requires_grad], config.lr)


class Runner:
    def __init__(self, config: TrainConfig, emit, commands=None, resume: dict | None = None,
                 monitor: bool = True, emit_steps=None):
        self.config = config
        self.emit_event = emit
        # the Step events of a few steps at a time, as StepRows (EventWriter.emit_steps makes the
        # events in its own thread); by default they are made here and go to ``emit``
        self.emit_steps = emit_steps or self._emit_step_events
        self.commands = commands  # a CommandReader, or None when nobody steers the run
        self.monitor = monitor  # False: the bare loop, for measuring what monitoring costs
        self.run_id = config.run_id or new_run_id(config)
        self.device = torch.device(config.device)
        # After an explosion the saturated network's gradients are denormal floats, which the CPU
        # handles some 20x slower; flushing them to zero changes nothing a norm can show.
        torch.set_flush_denormal(True)
        # These networks are small: a second intra-op thread gains little, and when the other core
        # is busy (a TUI, a second run) its barrier waits make every step up to 100x slower.
        torch.set_num_threads(1)
        keep_freed_memory()  # the same tensors every step: keep their pages mapped (engine/memory.py)
        torch.manual_seed(config.seed)
        self.task = make_task(config, self.device)
        self.model = build_model(config, len(self.task.vocabulary)).to(self.device)
        self.optimizer = make_optimizer(config, self.model)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.names = list(self.model.textbook_parameters())
        # live settings that commands change between two steps
        self.clip_on = config.clip is not None
        self.clip_max_norm = config.clip if config.clip is not None else 20.0
        self.clip_norm_type = config.clip_type
        self.speed = config.speed
        self.lr = config.lr
        self.paused = False
        self.steps_left = -1  # after a `step n` command: steps to run before pausing again
        self.stop_requested = False
        self.gates_input = ""  # the heatmaps' input: "" = the probe, else the console's last
        # progress
        self.step, self.epoch, self.start_batch = 0, 1, 0
        self.best_score: float | None = None
        self.best_path = os.path.join(config.checkpoint_dir, self.run_id, "best.pt")
        self.last_path = os.path.join(config.checkpoint_dir, self.run_id, "last.pt")
        self.alarms = AlarmWatch()
        self.gradient_norms = GradientNorms(self.model)
        self.last_alarm_step = -1
        self.pending: list[tuple] = []  # steps run whose Step events are not out yet
        self.after: dict[int, list] = {}  # events that follow the pending step of that index
        self.snapshots: deque = deque(maxlen=5)
        self.snapshot_every = 25
        self.started = time.monotonic()
        self.steps_per_s = 0.0
        if resume is not None:
            self._restore_checkpoint(resume)

    # --- events ---------------------------------------------------------

    def emit(self, cls, **fields) -> None:
        event = cls(run=self.run_id, step=self.step, t=round(time.monotonic() - self.started, 4), **fields)
        if self.pending:  # the steps run so far come first
            if cls in _RIDE_ALONG:  # an evaluation or a checkpoint leaves with them, a frame later at most
                self.after.setdefault(len(self.pending) - 1, []).append(event)
                return
            self._emit_steps()
        self.emit_event(event)

    def notice(self, message: str, level: str = "info") -> None:
        self.emit(ev.Notice, level=level, message=message)

    # --- the loop -------------------------------------------------------

    def run(self) -> str:
        config, task = self.config, self.task
        total_steps = config.epochs * task.steps_per_epoch
        shapes = {name: list(t.shape) for name, t in self.model.textbook_parameters().items()}
        self.emit(ev.RunStarted, config=config.to_dict(), parameters=shapes, dataset=task.dataset_sizes,
                  device=str(self.device), total_steps=total_steps, steps_per_epoch=task.steps_per_epoch,
                  vocabulary=list(task.vocabulary))
        self.emit(ev.Status, state="running", speed=self.speed)
        self._emit_gates("")
        self._take_snapshot()
        reason = "finished"
        next_slot = time.monotonic()
        last_step_time = time.monotonic()
        try:
            for epoch in range(self.epoch, config.epochs + 1):
                self.epoch = epoch
                task.start_epoch()
                for index, batch in enumerate(task.batches(epoch)):
                    if index < self.start_batch:
                        continue  # resuming in the middle of an epoch
                    self.start_batch = index + 1
                    # --- commands, pause, speed cap (between two steps) ---
                    self._handle_commands()
                    if self.stop_requested:
                        raise _Stop
                    if self.speed > 0:
                        next_slot = max(next_slot + 1.0 / self.speed, time.monotonic())
                        delay = next_slot - time.monotonic()
                        if delay > 0:
                            self._sleep(delay)
                            if self.stop_requested:
                                raise _Stop
                    # --- one step ---
                    self._train_step(batch, epoch)
                    now = time.monotonic()
                    rate = 1.0 / max(now - last_step_time, 1e-9)
                    self.steps_per_s = rate if self.steps_per_s == 0 else 0.9 * self.steps_per_s + 0.1 * rate
                    last_step_time = now
                    # --- evaluation and checkpoints ---
                    last_step = epoch == config.epochs and index == task.steps_per_epoch - 1
                    if config.eval_steps:
                        due = self.step % config.eval_steps == 0
                    else:
                        due = index == task.steps_per_epoch - 1
                    if due or last_step:
                        self._evaluate()
                    if self.steps_left > 0:
                        self.steps_left -= 1
                        if self.steps_left == 0:
                            self._set_paused(True)
                # (epoch, start_batch) always names the next batch to run: what a checkpoint resumes
                self.epoch, self.start_batch = epoch + 1, 0
        except _Stop:
            reason = "stopped"
        except KeyboardInterrupt:  # interrupted at once: the steps already run still reach the log
            self._emit_steps()
            raise
        except Exception as error:  # the run failed: say so, keep the log and the last weights
            self.emit(ev.Status, state="failed", message=f"{type(error).__name__}: {error}", speed=self.speed)
            self._save_last()
            self.emit(ev.RunFinished, reason="failed", best_dev=self.best_score)
            raise
        return self._finish(reason)

    def _train_step(self, batch, epoch: int) -> None:
        config = self.config
        # forward and backward
        if not (self.monitor and self.gradient_norms.zero_grad()):  # one buffer: one operation
            self.optimizer.zero_grad(set_to_none=False)
        loss = self.task.train_loss(self.model, batch)
        loss.backward()
        self.step += 1
        if not self.monitor:  # the bare textbook loop, for measuring the monitor's cost
            if self.clip_on:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.clip_max_norm,
                                               norm_type=float(self.clip_norm_type))
            self.optimizer.step()
            return
        # the total norm now (for clipping and the finiteness check); the per-parameter norms of
        # the step are kept and read with those of the next few steps
        total = self.gradient_norms.capture(self.clip_norm_type)
        loss_value = loss.item()
        skipped = not (math.isfinite(loss_value) and math.isfinite(total))
        factor = 1.0
        if skipped:
            self.optimizer.zero_grad(set_to_none=False)  # a non-finite update would ruin the weights
        else:
            if self.clip_on:  # reuse the norm measured above instead of measuring again
                factor = clip_factor(total, self.clip_max_norm)
                if factor < 1.0:
                    self.gradient_norms.scale(factor)
            self.optimizer.step()
        t = time.monotonic() - self.started
        self.pending.append((self.step, t, epoch, loss_value, total, self.clip_on, self.clip_max_norm,
                             self.clip_norm_type, factor, skipped, self.lr, self.steps_per_s))
        # Step events leave in small batches; at once when something needs them now: a skipped
        # update, a speed cap (someone is watching step by step), or a batch a frame old.
        if skipped or self.speed > 0:
            self._emit_steps(prompt=True)
        elif self.gradient_norms.ring_full or t - self.pending[0][1] > FRAME_S:
            self._emit_steps()
        if not self.alarms.active and self.step % self.snapshot_every == 0:
            self._take_snapshot()

    def _emit_steps(self, prompt: bool = False) -> None:
        """The Step events of the steps run since the last call, each followed by its alarms and the
        events that waited for it; ``prompt``: to be written at once, not with the writer's next burst."""
        pending, self.pending = self.pending, []
        after, self.after = self.after, {}
        names, norms = self.gradient_norms.collect_values()
        found = self.alarms.observe_steps([record[3] for record in pending], names, norms)
        for index, reports in found.items():
            step, t = pending[index][0], round(pending[index][1], 4)
            for report in reports:
                if report.kind != "healthy":
                    self.last_alarm_step = step
            after[index] = [ev.Alarm(run=self.run_id, step=step, t=t, kind=report.kind, parameter=report.parameter,
                                     value=report.value, ratio=report.ratio, median=report.median,
                                     message=report.message) for report in reports] + after.get(index, [])
        self.emit_steps(StepRows(self.run_id, self.config.epochs, names, pending, norms, after, prompt))

    def _emit_step_events(self, rows: StepRows) -> None:
        for event in rows.events():
            self.emit_event(event)

    def _evaluate(self) -> None:
        score, loss = self.task.evaluate(self.model, "dev")
        better = self.best_score is None or (score > self.best_score if self.task.higher_is_better
                                             else score < self.best_score)
        if better and math.isfinite(score):
            self.best_score = score
            self._save(self.best_path, "best", score)
        fields = {self.task.score_name: score}
        self.emit(ev.Eval, split="dev", loss=loss, is_best=better, best=self.best_score, **fields)
        self._emit_gates(self.gates_input, request=self.gates_input or "probe")

    def _finish(self, reason: str) -> str:
        self._save_last()
        fields = {}
        if os.path.exists(self.best_path):
            best = ckpt.load(self.best_path)
            current = ckpt.snapshot_parameters(self.model)
            self.model.load_textbook_parameters(best["parameters"])
            score, loss = self.task.evaluate(self.model, "test")
            self.model.load_textbook_parameters(current)
            self.emit(ev.Eval, split="test", loss=loss, **{self.task.score_name: score})
            fields = {f"test_{self.task.score_name}": score}
        state = "finished" if reason == "finished" else "stopped"
        self.emit(ev.Status, state=state, speed=self.speed)
        self.emit(ev.RunFinished, reason=reason, best_dev=self.best_score, checkpoint=self.last_path, **fields)
        return reason

    # --- checkpoints and snapshots ---------------------------------------

    def _payload(self) -> dict:
        return {"config": self.config.to_dict(), "parameters": ckpt.snapshot_parameters(self.model),
                "optimizer": self.optimizer.state_dict(), "impl": self.config.impl, "run_id": self.run_id,
                "step": self.step, "epoch": self.epoch, "batch": self.start_batch,
                "best": self.best_score, **self.task.checkpoint_extra()}

    def _save(self, path: str, kind: str, score: float | None = None) -> None:
        ckpt.save(path, self._payload())
        self.emit(ev.Checkpoint, path=path, kind=kind, score=score)

    def _save_last(self) -> None:
        self._save(self.last_path, "last", self.best_score)

    def _restore_checkpoint(self, payload: dict) -> None:
        self.model.load_textbook_parameters(payload["parameters"])
        if payload.get("impl") == self.config.impl and payload.get("optimizer"):
            self.optimizer.load_state_dict(payload["optimizer"])
            for group in self.optimizer.param_groups:  # the run's lr (the checkpoint's, or --lr)
                group["lr"] = self.lr
        self.step = int(payload.get("step", 0))
        self.epoch = int(payload.get("epoch", 1))
        self.start_batch = int(payload.get("batch", 0))
        if self.start_batch >= self.task.steps_per_epoch:
            self.epoch, self.start_batch = self.epoch + 1, 0
        self.best_score = payload.get("best")

    def _take_snapshot(self) -> None:
        # the parameters themselves (a few packed tensors), not the textbook views of them
        self.snapshots.append((self.step, [p.detach().clone() for p in self.model.parameters()],
                               copy_state(self.optimizer.state_dict())))

    def _rewind(self) -> None:
        if self.pending:  # the alarms of the steps run so far decide which snapshot is healthy
            self._emit_steps()
        healthy = [s for s in self.snapshots if s[0] < self.last_alarm_step] if self.last_alarm_step >= 0 else []
        chosen = healthy[-1] if healthy else (self.snapshots[-1] if self.snapshots else None)
        if chosen is None:
            self.notice("nothing to rewind to yet", "warning")
            return
        step, parameters, optimizer_state = chosen
        with torch.no_grad():
            for parameter, value in zip(self.model.parameters(), parameters):
                parameter.copy_(value)
        self.optimizer.load_state_dict(optimizer_state)  # copies the values in; the snapshot stays intact
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.alarms.reset()
        self.last_alarm_step = -1
        self.emit(ev.Alarm, kind="healthy", message=f"rewound to the weights of step {step}")
        self.notice(f"rewound to the weights of step {step}")

    # --- commands -------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        """Wait for the speed cap, answering commands that arrive meanwhile."""
        end = time.monotonic() + seconds
        while not self.stop_requested:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            if self.commands is None:
                time.sleep(remaining)
                return
            for command in self.commands.wait(min(remaining, 0.05)):
                self._answer(command)
            if self.paused:
                self._handle_commands()
                return

    def _handle_commands(self) -> None:
        if self.commands is None:
            return
        for command in self.commands.poll():
            self._answer(command)
        while self.paused and not self.stop_requested:
            for command in self.commands.wait(0.1):
                self._answer(command)

    def _answer(self, command) -> None:
        """Apply a command; what it made (and the steps before) is written at once, not with the
        writer's next burst: someone is waiting for it."""
        self._apply(command)
        self._emit_steps(prompt=True)

    def _set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            self.emit(ev.Status, state="paused" if paused else "running", speed=self.speed)

    def _apply(self, command: ev.Command) -> None:
        if isinstance(command, ev.Stop):
            self.stop_requested = True
            self.paused = False
        elif isinstance(command, ev.Pause):
            self.steps_left = -1
            self._set_paused(True)
        elif isinstance(command, ev.Resume):
            self.steps_left = -1
            self._set_paused(False)
        elif isinstance(command, ev.StepCommand):
            self.steps_left = max(1, int(command.n))
            self._set_paused(False)
        elif isinstance(command, ev.SetClip):
            self._set_clip(command)
        elif isinstance(command, ev.SetLr):
            if not (isinstance(command.lr, (int, float)) and math.isfinite(command.lr) and command.lr > 0):
                self.notice(f"lr must be a positive number, not {command.lr}", "error")
                return
            self.lr = float(command.lr)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
            self.notice(f"lr set to {self.lr:g}")
        elif isinstance(command, ev.SetSpeed):
            if not (math.isfinite(command.steps_per_s) and command.steps_per_s >= 0):
                self.notice(f"speed must be 0 (unlimited) or a positive steps/s, not {command.steps_per_s}", "error")
                return
            self.speed = float(command.steps_per_s)
            self.emit(ev.Status, state="paused" if self.paused else "running", speed=self.speed)
        elif isinstance(command, ev.Rewind):
            self._rewind()
        elif isinstance(command, ev.GatesCommand):
            if self._emit_gates(command.input, request=command.input or "probe"):
                self.gates_input = command.input  # later refreshes keep showing the console's input
        elif isinstance(command, ev.Predict):
            try:
                answer = self.task.predict(self.model, command.input)
            except ValueError as error:
                self.notice(str(error), "error")
                return
            self.emit(ev.Prediction, **answer)
        elif isinstance(command, ev.Generate):
            generate = getattr(self.task, "generate", None)
            if generate is None:
                self.notice("generation is for the language-model task; type digits to predict their sum", "error")
                return
            generate(self.model, command, self.emit, self.notice)

    def _set_clip(self, command: ev.SetClip) -> None:
        if command.max_norm is not None and not (math.isfinite(command.max_norm) and command.max_norm > 0):
            self.notice(f"max_norm must be positive, not {command.max_norm}", "error")
            return
        if command.norm_type is not None and command.norm_type not in ("1", "2", "inf"):
            self.notice(f"norm type must be 1, 2 or inf, not {command.norm_type}", "error")
            return
        self.clip_on = bool(command.on)
        if command.max_norm is not None:
            self.clip_max_norm = float(command.max_norm)
        if command.norm_type is not None:
            self.clip_norm_type = command.norm_type
        if self.clip_on:
            self.notice(f"clipping ON: max_norm {self.clip_max_norm:g}, norm type {self.clip_norm_type}")
        else:
            self.notice("clipping OFF")

    def _emit_gates(self, text: str, request: str = "probe") -> bool:
        try:
            tokens, matrices = self.task.gates(self.model, text)
        except ValueError as error:
            self.notice(str(error), "error")
            return False
        self.emit(ev.Gates, tokens=tokens, cell=self.config.cell, matrices=matrices, request=request)
        return True

    def request_stop(self) -> None:
        """Called from a signal handler: stop at the next step boundary."""
        self.stop_requested = True
        self.paused = False


class _Stop(Exception):
    pass

