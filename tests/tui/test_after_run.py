"""After the run the console keeps answering until q, from the final or the best weights; a language
model's generation is greedy or sampled (:sample t k seed); quitting mid-run says how to resume."""

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest

from engine.commands import GatesCommand, Generate, Predict, Stop, UseWeights
from engine.events import Prediction, RunFinished, Weights
from engine.logs import read_log
from tui.app import build_app
from tui.synthetic import synthetic_events

from monitor_fakes import FakeLiveSource, until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES = [(80, 24), (120, 40)]


def finished_run(task="digits", cell="srn"):
    events = list(synthetic_events(10, cell=cell, task=task))
    return events + [Weights(run="synthetic", step=10, which="final", checkpoint="checkpoints/x/last.pt",
                             trained_steps=10)]


def console_lines(app):
    return str(app.monitor.console_panel.query_one("#console-log").render()).splitlines()


def placeholder(app):
    return app.query_one("#console-input").placeholder


def prediction(top=13):
    return Prediction(run="synthetic", step=10, tokens=list("67000"), predicted=top,
                      top=[[top, 0.8], [12, 0.1], [14, 0.05]], target=13)


async def submit(pilot, app, text):
    """Type a console line as a user does: / to reach the console (focus then stays there), the text, enter."""
    if app.focused is not app.query_one("#console-input"):
        await pilot.press("slash")
    await pilot.press(*text, "enter")
    await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES)
def test_the_finished_run_answers_from_the_final_then_the_best_weights(size):
    async def run():
        source = FakeLiveSource(finished_run())
        app = build_app(source)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.state.weights == "final")
            await until(pilot, lambda: any("final weights (step 10) answer" in line for line in console_lines(app)))
            assert "final weights (:best)" in placeholder(app)
            await submit(pilot, app, "6 7")
            assert source.sent == [Predict(input="6 7"), GatesCommand(input="6 7")]
            source.push([prediction()])
            await until(pilot, lambda: str(app.monitor.console_panel.lines[-1]).startswith("final · 6 7 0 0 0 → 13"))
            await submit(pilot, app, ":best")
            assert source.sent[-1] == UseWeights(which="best")
            source.push([Weights(run="synthetic", step=10, which="best", checkpoint="checkpoints/x/best.pt",
                                 trained_steps=5, score=0.5), prediction(12)])
            await until(pilot, lambda: str(app.monitor.console_panel.lines[-1]).startswith("best · 6 7 0 0 0 → 12"))
            told = str(app.monitor.console_panel.lines[-2])
            assert told == "the best weights (step 5, dev accuracy 0.5) answer · :final switches back"
            assert any(line.startswith("best · 6 7 0 0 0 → 12") for line in console_lines(app))  # on screen
            await until(pilot, lambda: "best weights (:final)" in placeholder(app))
            await pilot.press("escape", "q")  # q quits: the engine is asked to stop, and the app ends
            await until(pilot, lambda: not app.is_running)
        assert getattr(source, "send_stop_seen", False)

    asyncio.run(run())


@pytest.mark.parametrize("size", SIZES)
def test_the_runs_result_and_how_to_ask_the_model_stay_in_view_after_the_run(size):
    """At 80 columns the result line wraps (a checkpoint path is long): its test accuracy and the line
    that says the model still answers are both on screen."""
    async def run():
        events = list(synthetic_events(10))[:-1] + [
            RunFinished(run="synthetic", step=10, reason="finished", best_dev=0.12, test_accuracy=0.45,
                        checkpoint="checkpoints/srn-digits-20261129-204426-27326/last.pt"),
            Weights(run="synthetic", step=10, which="final", checkpoint="checkpoints/x/last.pt", trained_steps=10)]
        app = build_app(FakeLiveSource(events))
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: any("final weights (step 10) answer" in line for line in console_lines(app)))
            shown = " ".join(console_lines(app))
            assert "test accuracy 0.45" in shown
            assert "run over: the final weights" in shown

    asyncio.run(run())


def test_weights_are_chosen_after_the_run_only_and_sampling_is_for_a_language_model():
    async def run():
        source = FakeLiveSource(list(synthetic_events(5, finish=False)))
        app = build_app(source)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.state.last_index == 4)
            await submit(pilot, app, ":best")
            assert str(app.monitor.console_panel.lines[-1]).startswith(":best chooses weights once the run has finished")
            await submit(pilot, app, ":sample 0.8")
            assert str(app.monitor.console_panel.lines[-1]) == \
                ":sample is for a language model's generation; a digit run predicts its sum"
            await submit(pilot, app, ":what")
            assert str(app.monitor.console_panel.lines[-1]).startswith("console options: :greedy · :sample")
            assert source.sent == []

    asyncio.run(run())


@pytest.mark.parametrize("size", SIZES)
def test_generation_is_greedy_or_sampled_as_the_console_says(size):
    async def run():
        source = FakeLiveSource(finished_run(task="lm", cell="lstm"))
        app = build_app(source)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.state.weights == "final")
            await until(pilot, lambda: "greedy (:sample t=0.8 k=5)" in placeholder(app))
            await submit(pilot, app, "the")
            assert source.sent[-2] == Generate(prefix="the", length=100, request_id=1)  # greedy
            await submit(pilot, app, ":sample t=0.8 k=5 seed=3")
            assert str(app.monitor.console_panel.lines[-1]) == "generation from now on: sampling t=0.8 k=5 seed=3"
            await submit(pilot, app, "the")
            assert source.sent[-2] == Generate(prefix="the", length=100, temperature=0.8, top_k=5, seed=3,
                                               request_id=2)
            for bad, told in [(":sample t=500", "the temperature must be 0 (greedy) or between 0.01 and 100, not 500"),
                              (":sample k=-2", "top-k must be 0 (all characters) or positive, not -2"),
                              (":sample t=hot", "the temperature (t=) is a number, not 'hot'"),
                              (":sample 1 2 3 4", ":sample takes at most a temperature, a top-k and a seed, not '4' too")]:
                sent = len(source.sent)
                await submit(pilot, app, bad)
                assert str(app.monitor.console_panel.lines[-1]) == told and len(source.sent) == sent
            await until(pilot, lambda: "sampling t=0.8 k=5 seed=3 (:greedy)" in placeholder(app))  # refusals changed nothing
            await submit(pilot, app, ":sample 1.5")
            await submit(pilot, app, "a")
            assert source.sent[-2] == Generate(prefix="a", length=100, temperature=1.5, request_id=3)
            await submit(pilot, app, ":greedy")
            await submit(pilot, app, "a")
            assert source.sent[-2] == Generate(prefix="a", length=100, request_id=4)

    asyncio.run(run())


def test_the_real_engine_answers_after_its_run_until_q(tmp_path):
    """A short digit run in the engine's child process: once it has finished the console still predicts,
    :best switches to the best checkpoint's weights, and q ends the child cleanly."""
    from engine.config import build_config
    from tui.sources import ChildProcessSource

    config = build_config(length=5, epochs=3, checkpoint_dir=str(tmp_path / "checkpoints"),
                          runs_dir=str(tmp_path / "runs"))
    log = str(tmp_path / "run.jsonl")
    source = ChildProcessSource([sys.executable, "-m", "engine.child", json.dumps(config.to_dict()), log],
                                cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ROOT}).start()

    async def run():
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.state.weights == "final", timeout=90)
            await submit(pilot, app, "6 7")
            await until(pilot, lambda: str(app.monitor.console_panel.lines[-1]).startswith("final · 6 7 0 0 0 →"),
                        timeout=20)
            await submit(pilot, app, ":best")
            await until(pilot, lambda: app.state.weights == "best", timeout=20)
            await submit(pilot, app, "6 7")
            await until(pilot, lambda: str(app.monitor.console_panel.lines[-1]).startswith("best · 6 7 0 0 0 →"),
                        timeout=20)
            await pilot.press("escape", "q")
            await until(pilot, lambda: not app.is_running, timeout=20)
        return app

    app = asyncio.run(run())
    assert source.exit_code == 0 and not app.failure
    events, bad = read_log(log)
    finished = next(i for i, e in enumerate(events) if type(e) is RunFinished)
    assert bad == 0 and events[finished].reason == "finished"
    assert [e.type for e in events[finished + 1:] if e.type in ("weights", "prediction")] == \
        ["weights", "prediction", "weights", "prediction"]


def test_quitting_mid_run_prints_the_last_checkpoint_and_the_command_that_resumes_it(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "PYTHONPATH": ROOT, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES"):
        env.pop(name, None)
    child = pexpect.spawn(sys.executable, ["-m", "rnnlab_tui", "train", "--length", "5", "--epochs", "4",
                                           "--speed", "5", "--no-pause-on-alarm"],
                          cwd=str(tmp_path), dimensions=(24, 80), timeout=60, env=env)
    output = []
    try:
        child.expect(r"step [1-9]")  # a few steps in
        child.send("q")
        child.expect(pexpect.EOF)
        output.append(child.before.decode("utf-8", "replace"))
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    after = output[0].rsplit("\x1b[?1049l", 1)[-1]  # what is printed once the app has left the screen
    after = re.sub(r"\x1b\[[0-9;?<>=]*[a-zA-Z~]", "", after).replace("\r", "")
    told = re.search(r"stopped at step (\d+); last checkpoint (\S+)\nresume with: rnnlab-tui train --resume (\S+)",
                     after)
    assert told, after
    step, path = int(told.group(1)), told.group(2)
    assert told.group(3) == path and path.endswith("last.pt")
    replay = re.search(r"replay with: rnnlab-tui watch (\S+)", after)
    assert replay and replay.group(1).endswith(".jsonl.gz") and (tmp_path / replay.group(1)).is_file(), after
    from engine import checkpoint as ckpt

    assert ckpt.load(str(tmp_path / path))["step"] == step < 20
    # the printed command resumes it (headless here: its output is a pipe)
    resumed = subprocess.run([sys.executable, "-m", "rnnlab_tui", "train", "--resume", path],
                             cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"[Train] epoch: 4/4, step: 20/20" in resumed.stdout
