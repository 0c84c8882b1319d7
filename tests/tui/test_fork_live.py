"""f in the live monitor: a fake source carrying two runs' events, and the real engine child forked."""

import asyncio
import json
import os
import sys

from engine.commands import Fork, SetClip, UseWeights
from engine.events import Eval, Prediction, RunStarted, Settings, Status, Weights
from engine.logs import read_log
from tui.app import build_app
from tui.sources import ChildProcessSource
from tui.synthetic import synthetic_events

from monitor_fakes import FakeLiveSource, until as _until

SIZE = (120, 40)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _header(app):
    return str(app.monitor.run_header.render())


def _console(app):
    return "\n".join(line.plain for line in app.monitor.console_panel.lines)


def _branch(events, run, fork_step):
    """The events after a fork, copied for the second branch (its own run id, from the fork step on)."""
    copied = []
    for event in events:
        if type(event) is RunStarted:
            event = RunStarted(run=run, config={**event.config, "clip": 1.0, "forked_from": event.run,
                                                 "fork_step": fork_step}, parameters=event.parameters,
                               total_steps=event.total_steps, steps_per_epoch=event.steps_per_epoch)
        elif type(event) is Settings:
            event = Settings(run=run, step=fork_step, clip_on=True, clip_max_norm=1.0, lr=event.lr, cause="fork")
        elif event.step <= fork_step:
            continue
        else:
            object.__setattr__(event, "run", run)
        copied.append(event)
    return copied


def test_f_sends_the_fork_and_both_branches_are_overlaid_as_they_arrive():
    async def run():
        first = list(synthetic_events(40, finish=False))
        source = FakeLiveSource(first[:30])
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.steps and app.state.steps[-1] >= 5)
            await pilot.press("f")  # clipping is off in this run: the fork switches it on
            await _until(pilot, lambda: any(type(c) is Fork for c in source.sent))
            fork = next(c for c in source.sent if type(c) is Fork)
            assert fork.setting == "clip" and fork.value is not None
            await _until(pilot, lambda: "fork with clip" in _header(app))  # until the engine answers
            step = app.state.steps[-1]
            source.push(_branch(list(synthetic_events(40, finish=False, seed=3)), "synthetic-b", step))
            source.push(first[30:])
            # the header says which branch the clip keys steer: the first, the run that was forked
            a_line = f"▶━A clip off · forked at step {step} · step 40 · running · steered by c [ ] a · synthetic\n"
            await _until(pilot, lambda: len(app.runs.states) == 2 and a_line in _header(app))
            header = _header(app)
            assert f"━B clip 1 L2 · branch from step {step} · step" in header and "· synthetic-b" in header
            assert "loss B" in str(app.monitor.sparklines.render())
            await pilot.press("p")  # one pause for both: the engine steps them in one loop
            assert type(source.sent[-1]).__name__ == "Pause"
            await pilot.press("o", "c")  # B at the front: c still switches A's clipping (off, so on)
            await _until(pilot, lambda: type(source.sent[-1]) is SetClip)
            assert source.sent[-1].on
            await _until(pilot, lambda: "clip ON for A requested" in _header(app))
            source.push([Settings(run="synthetic", step=40, clip_on=True, clip_max_norm=20.0, cause="command")])
            await _until(pilot, lambda: "━A clip 20 L2" in _header(app))  # the engine's answer, for A
            assert "requested" not in _header(app) and "━B clip 1 L2" in _header(app)
            # the two branches share the console: each line says whose it is
            source.push([Eval(run="synthetic-b", step=40, split="test", accuracy=0.5)])
            await _until(pilot, lambda: "B: step 40: test accuracy 0.5" in _console(app))
            source.push([Prediction(run="synthetic", step=40, tokens=["6", "7"], predicted=13, target=13,
                                    top=[[13, 0.9]])])  # an answer to the console: the branch that gave it
            await _until(pilot, lambda: "A: 6 7 → 13" in _console(app))

    asyncio.run(run())


def test_after_a_forked_run_best_chooses_the_weights_the_console_answers_with_whichever_branch_is_in_front():
    async def run():
        first = list(synthetic_events(20))
        # the engine answers the console with the first branch's model after the run: its weights event
        after = [Weights(run="synthetic", step=20, which="final", checkpoint="checkpoints/x/last.pt", trained_steps=20)]
        source = FakeLiveSource(first + _branch(list(synthetic_events(20, seed=3)), "synthetic-b", 10) + after)
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.runs.steered.weights == "final" and len(app.runs.states) == 2)
            await pilot.press("o")  # B at the front: finished too
            assert app.state is app.runs.states[1] and app.state.finished is not None
            await _until(pilot, lambda: "final weights (:best)" in app.query_one("#console-input").placeholder)
            await pilot.press("slash", *":best", "enter")
            await _until(pilot, lambda: source.sent and source.sent[-1] == UseWeights(which="best"))
            assert "once the run has finished" not in _console(app)
            assert "A's weights" in app.monitor.console_panel.lines[-1].plain  # whose weights it switches
            source.push([Weights(run="synthetic", step=20, which="best", checkpoint="checkpoints/x/best.pt",
                                 trained_steps=15, score=0.5)])
            await _until(pilot, lambda: "A: the best weights (step 15, dev accuracy 0.5) answer" in _console(app))

    asyncio.run(run())


def test_the_real_engine_forks_at_f_and_both_branches_pause_with_p(tmp_path):
    from engine.config import build_config

    config = build_config("explode", epochs=200, speed=40.0, checkpoint_dir=str(tmp_path / "checkpoints"),
                          runs_dir=str(tmp_path / "runs"))
    log = str(tmp_path / "run.jsonl")
    env = {**os.environ, "PYTHONPATH": ROOT}
    source = ChildProcessSource([sys.executable, "-m", "engine.child", json.dumps(config.to_dict()), log],
                                cwd=str(tmp_path), env=env).start()

    async def run():
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.steps and app.state.steps[-1] >= 3, timeout=60)
            await pilot.press("f")
            # the header draws the second branch once its first step is in (a frame after it arrives)
            await _until(pilot, lambda: len(app.runs.states) == 2 and "branch from step" in _header(app), timeout=20)
            assert "━B clip " in _header(app) and "-b" in _header(app)
            await pilot.press("p")
            await _until(pilot, lambda: all(s.status is not None and s.status.state == "paused"
                                            for s in app.runs.states), timeout=20)
            await pilot.press("q")
            await _until(pilot, lambda: app.ended is not None, timeout=20)

    asyncio.run(run())
    first, _ = read_log(log)
    second, _ = read_log(str(tmp_path / "run-b.jsonl"))
    fork_step = second[0].config["fork_step"]
    losses = lambda events: {e.step: e.loss for e in events if e.type == "step"}
    a, b = losses(first), losses(second)
    assert min(b) == fork_step + 1 and b[fork_step + 1] == a[fork_step + 1]  # the same weights and batch
    paused = [e for e in second if type(e) is Status and e.state == "paused"]
    assert paused, "the second branch's log says it paused with the first"
    assert second[-1].type == "run_finished" and first[-1].type == "run_finished"
