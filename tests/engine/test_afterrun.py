"""After the run: the finished model answers the console (final or best weights) until stop or the end of
the command stream; a stopped run, a headless run and a fork's second branch end as before."""

import os
import threading

import pytest
import torch

from engine import checkpoint as ckpt
from engine import commands as cmd
from engine import events as ev
from engine import logs
from engine.config import build_config
from engine.session import run_session
from engine.tasks import DigitTask

TIMEOUT = 120  # seconds a session may take before the test calls it hung


class Console:
    """The TUI's side of a session: a pipe for commands, written when the run's run_finished goes out."""

    def __init__(self, after_finish: list[cmd.Command], close: bool = True, before: list[cmd.Command] = ()):
        read_fd, write_fd = os.pipe()
        self.stream = os.fdopen(read_fd, "r", encoding="utf-8")
        self.pipe = os.fdopen(write_fd, "w", encoding="utf-8")
        self.after_finish, self.close = after_finish, close
        self.send(before)

    def send(self, commands) -> None:
        for command in commands:
            self.pipe.write(command.to_json() + "\n")
        self.pipe.flush()

    def on_event(self, event: ev.Event) -> None:
        if type(event) is ev.RunFinished:
            self.send(self.after_finish)
            if self.close:
                self.pipe.close()  # the TUI went away: the engine must not wait for it


def session(tmp_path, console: Console | None, fork_at=None, **options):
    """run_session in a thread (so a hang fails the test instead of blocking it); its reason and events."""
    config = build_config(**{"length": 5, "epochs": 2, "checkpoint_dir": str(tmp_path / "checkpoints"),
                             "runs_dir": str(tmp_path / "runs"), "run_id": "after", **options})
    log = str(tmp_path / "run.jsonl")
    result = {}

    def target():
        result["reason"], _ = run_session(config, events_path=log, fork_at=fork_at,
                                          callbacks=[console.on_event] if console else None,
                                          command_stream=console.stream if console else None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the session kept waiting"
    if console is not None and not console.pipe.closed:
        console.pipe.close()
    events, bad = logs.read_log(log)
    assert bad == 0
    return result["reason"], events, config


def after_finish(events):
    index = next(i for i, e in enumerate(events) if type(e) is ev.RunFinished)
    return events[index + 1:]


def expected_prediction(path: str, config, text: str) -> dict:
    payload = ckpt.load(path)
    model = ckpt.model_of(payload, config, path)
    return DigitTask(config, torch.device("cpu")).predict(model, text)


def test_the_finished_model_answers_with_its_final_and_best_weights_until_the_stream_ends(tmp_path):
    asked = [cmd.Predict(input="6 7"), cmd.UseWeights(which="best"), cmd.Predict(input="6 7"),
             cmd.UseWeights(which="final"), cmd.Predict(input="6 7"), cmd.SetClip(on=True, max_norm=1.0),
             cmd.UseWeights(which="middling")]
    # three epochs of this run: dev accuracy is best after the second, so best and final weights differ
    reason, events, config = session(tmp_path, Console(asked), epochs=3)  # the stream ends without a stop
    assert reason == "finished"
    after = after_finish(events)
    kinds = [e.type for e in after]
    assert kinds == ["weights", "prediction", "weights", "gates", "prediction", "weights", "gates", "prediction",
                     "notice", "notice"]
    final, best, final_again = [e for e in after if type(e) is ev.Weights]
    last_path, best_path = final.checkpoint, best.checkpoint
    assert (final.which, best.which, final_again.which) == ("final", "best", "final")
    assert last_path.endswith("last.pt") and best_path.endswith("best.pt")
    payload = ckpt.load(best_path)
    assert best.trained_steps == payload["step"] and best.score == payload["best"]
    assert final.trained_steps == ckpt.load(last_path)["step"] == max(e.step for e in events if type(e) is ev.Step)
    assert best.trained_steps < final.trained_steps
    # each heatmap is captioned with the step of the weights that drew it
    assert [e.step for e in after if type(e) is ev.Gates] == [best.trained_steps, final.trained_steps]
    predictions = [e for e in after if type(e) is ev.Prediction]
    for prediction, path in zip(predictions, (last_path, best_path, last_path)):
        expected = expected_prediction(path, config, "6 7")
        assert [label for label, _ in prediction.top] == [label for label, _ in expected["top"]]
        assert [p for _, p in prediction.top] == pytest.approx([p for _, p in expected["top"]])
    assert predictions[0].top == predictions[2].top != predictions[1].top
    training_ended, wrong_name = [e for e in after if type(e) is ev.Notice]
    assert training_ended.level == "warning" and "the run has finished: clipping no longer applies" in training_ended.message
    assert wrong_name.level == "error" and "'middling'" in wrong_name.message


def test_a_stop_ends_the_answers_while_the_stream_stays_open(tmp_path):
    reason, events, _ = session(tmp_path, Console([cmd.GatesCommand(input="1 2 3"), cmd.Stop(),
                                                   cmd.Predict(input="1 2")], close=False))
    assert reason == "finished"
    assert [e.type for e in after_finish(events)] == ["weights", "gates"]  # nothing after the stop


def test_a_run_stopped_while_training_ends_without_waiting(tmp_path):
    reason, events, _ = session(tmp_path, Console([], close=False, before=[cmd.Stop()]))
    assert reason == "stopped" and events[-1].type == "run_finished" and events[-1].reason == "stopped"


def test_a_run_nobody_steers_ends_at_run_finished(tmp_path):
    reason, events, _ = session(tmp_path, None)
    assert reason == "finished" and events[-1].type == "run_finished"


def test_a_forked_run_answers_after_both_branches_ended(tmp_path):
    console = Console([cmd.Predict(input="6 7"), cmd.Fork(setting="lr", value=0.1)])
    reason, events, _ = session(tmp_path, console, fork_at=(3, cmd.Fork.parse("clip=1")), preset="explode")
    assert reason == "finished"
    assert [e.type for e in after_finish(events)] == ["weights", "prediction", "notice"]
    second, bad = logs.read_log(str(tmp_path / "run-b.jsonl"))
    assert bad == 0 and second[-1].type == "run_finished" and second[-1].reason == "finished"
    assert sum(type(e) is ev.RunFinished for e in second) == 1


def test_the_child_process_answers_after_run_finished_and_exits_when_stdin_closes(tmp_path):
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = build_config(length=5, epochs=1, checkpoint_dir=str(tmp_path), runs_dir=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "engine.child", json.dumps(config.to_dict())], cwd=root,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": root})
    try:
        seen = []
        for line in process.stdout:
            seen.append(ev.from_json(line))
            if type(seen[-1]) is ev.RunFinished:
                process.stdin.write(cmd.Predict(input="6 7").to_json() + "\n")
                process.stdin.flush()
            elif type(seen[-1]) is ev.Prediction:
                process.stdin.close()  # the TUI went away
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        process.kill()
        process.wait()
    assert [e.type for e in after_finish(seen)] == ["weights", "prediction"]
    assert seen[-1].tokens[:2] == ["6", "7"]
