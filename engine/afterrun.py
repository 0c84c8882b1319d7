"""After the run: the finished model answers the console until the one steering it says stop.

A run watched in the TUI ends with its weights still in memory. Rather than exit, the engine keeps
answering the console (predictions, heatmaps, generation) until a ``stop`` command arrives, the command
stream closes (the TUI is gone), a signal asks it to stop, or the events can no longer be written.
``use_weights`` switches between the final weights and the best dev checkpoint's; each switch is a
``weights`` event followed by the heatmaps drawn with the chosen weights, so the screen says which
weights answered.

Training is over: commands that steer training (clip, lr, pause, rewind, fork ...) get one line saying so.
"""

from __future__ import annotations

import os

from . import checkpoint as ckpt
from . import commands as cmd
from . import events as ev

WAIT_S = 0.1  # how often the wait looks up from the command stream (a stop signal, a failing log)
ANSWERED = (cmd.Predict, cmd.GatesCommand, cmd.Generate)
TRAINING_WORDS = {"set_clip": "clipping", "set_lr": "the lr", "pause": "pausing", "resume": "resuming",
                  "step": "stepping", "rewind": "rewinding", "set_speed": "the speed cap", "fork": "forking"}


def answer_after_run(runner, commands, reason: str = "finished") -> None:
    """Answer the console with ``runner``'s finished model until stop; ``commands`` is the run's
    CommandReader (None: nobody can ask, so nothing is waited for). A run that ended another way than
    ``finished`` (stopped, failed) was asked to end: nothing is waited for either."""
    if commands is None or reason != "finished":
        return
    weights = _Weights(runner)
    weights.announce()
    try:
        while not runner.stop_requested and not runner.log_error():
            for command in commands.wait(WAIT_S):
                if isinstance(command, cmd.Stop):
                    return
                if isinstance(command, ANSWERED):
                    runner._apply(command)  # as during the run, with the weights now chosen
                elif isinstance(command, cmd.UseWeights):
                    weights.use(command.which)
                else:
                    what = TRAINING_WORDS.get(command.type, command.type)
                    runner.notice(f"the run has finished: {what} no longer applies; the console still answers "
                                  "until q", "warning")
    except KeyboardInterrupt:  # a second Ctrl-C: the run had already ended cleanly
        return


class _Weights:
    """The final weights, kept in memory, and the best checkpoint's, read when asked for."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.final = ckpt.snapshot_parameters(runner.model)

    def announce(self) -> None:
        runner = self.runner
        runner.emit(ev.Weights, which="final", checkpoint=runner.last_path, trained_steps=runner.step)

    def use(self, which: str) -> None:
        runner = self.runner
        if which not in ("final", "best"):
            runner.notice(f"the weights are final or best, not {which!r}", "error")
            return
        if which == "final":
            runner.model.load_textbook_parameters(self.final)
            runner.weights_step = None
            self.announce()
        else:
            if not os.path.isfile(runner.best_path):
                runner.notice("there is no best checkpoint: no evaluation of this run scored", "error")
                return
            try:
                payload = ckpt.load(runner.best_path)
            except ckpt.CheckpointError as error:
                runner.notice(str(error), "error")
                return
            runner.model.load_textbook_parameters(payload["parameters"])
            runner.weights_step = int(payload.get("step", 0))
            runner.emit(ev.Weights, which="best", checkpoint=runner.best_path,
                        trained_steps=runner.weights_step, score=payload.get("best"))
        runner._emit_gates()  # the heatmaps of the input shown, drawn with these weights
