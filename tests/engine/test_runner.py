import math
import queue
import time
import types

import pytest
import torch

from engine import checkpoint as ckpt
from engine import commands as cmd
from engine.config import build_config
from engine.runner import Runner


def train(tmp_path, commands=None, hook=None, **options):
    events = []
    config = build_config(checkpoint_dir=str(tmp_path / "checkpoints"), **options)
    runner = Runner(config, events.append, commands)
    if hook:
        hook(runner)
    runner.run()
    return runner, events


def of(events, kind):
    return [e for e in events if e.type == kind]


def settings_of_steps(events) -> dict:
    """step -> the Settings event in force when that step ran."""
    in_force, found = None, {}
    for event in events:
        if event.type == "settings":
            in_force = event
        elif event.type == "step":
            found[event.step] = in_force
    return found


class Commands:
    """A scripted command channel: commands queued for given steps."""

    def __init__(self, script):
        self.script = script  # step -> [commands] delivered before that step runs
        self.runner = None

    def poll(self):
        return self.script.pop(self.runner.step + 1, []) if self.runner else []

    def wait(self, timeout):
        return self.poll()


def test_the_explosion_preset_explodes_alarms_and_stays_at_chance(tmp_path):
    _, events = train(tmp_path, preset="explode")
    steps = of(events, "step")
    assert len(steps) == 250
    u_norms = [s.grad_norms["U"] for s in steps[:10]]
    first_nonzero = next(u for u in u_norms if u > 0)
    assert max(u_norms) >= 1000 * first_nonzero
    alarms = [a for a in of(events, "alarm") if a.kind == "explosion"]
    assert alarms and alarms[0].step <= 10 and alarms[0].ratio >= 100
    assert max(s.grad_norms["U"] for s in steps[-20:]) < 1e-3  # collapsed: tanh saturated
    dev = [e.accuracy for e in of(events, "eval") if e.split == "dev"]
    assert dev[-1] < 0.2  # 19 classes: chance is about 0.05-0.1


def test_the_three_implementations_give_the_same_first_steps(tmp_path):
    norms = {}
    for impl in ("torch", "scratch", "naive"):  # train --impl naive: the textbook's code as printed
        _, events = train(tmp_path, preset="explode", impl=impl, epochs=1)
        norms[impl] = [s.grad_norms for s in of(events, "step")[:3]]
    for impl in ("scratch", "naive"):
        for library, ours in zip(norms["torch"], norms[impl]):
            assert list(library) == list(ours)
            for name in library:
                assert ours[name] == pytest.approx(library[name], rel=1e-4, abs=1e-6), (impl, name)


def test_clipping_bounds_the_norm_that_reaches_the_optimizer_and_reports_pre_clip(tmp_path):
    applied = []

    def measure_post_clip(runner):
        step = runner.optimizer.step

        def measured_step():
            grads = [p.grad for p in runner.trainable if p.grad is not None]
            applied.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
            step()

        runner.optimizer.step = measured_step

    _, events = train(tmp_path, hook=measure_post_clip, preset="clip")
    steps = of(events, "step")
    assert len(applied) == len(steps) == 250
    assert max(applied) <= 20 + 1e-4
    assert max(s.total_norm for s in steps) > 20  # what clipping prevented is still reported
    settings = of(events, "settings")
    assert len(settings) == 1 and settings[0].clip_on and settings[0].clip_max_norm == 20  # one change: the start
    for step, norm in zip(steps, applied):
        assert norm == pytest.approx(step.total_norm * step.clip_factor, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("clip_type", ["1", "inf"])
def test_other_norm_types_clip_in_their_own_norm(tmp_path, clip_type):
    _, events = train(tmp_path, preset="clip", clip_type=clip_type, clip=5.0, epochs=2)
    for step in of(events, "step"):
        assert step.total_norm * step.clip_factor <= 5 + 1e-4
    assert [s.clip_norm_type for s in of(events, "settings")] == [clip_type]


def test_a_non_finite_loss_skips_the_update_and_raises_an_alarm(tmp_path):
    def poison(runner):
        original = runner.task.train_loss

        def loss(model, batch):
            value = original(model, batch)
            return value * math.nan if runner.step == 2 else value

        runner.task.train_loss = loss

    weights = {}  # steps done -> the weights after them

    def keep_weights(runner):
        poison(runner)
        loss = runner.task.train_loss

        def recorded(model, batch):
            weights[runner.step] = {k: v.clone() for k, v in runner.model.textbook_parameters().items()}
            return loss(model, batch)

        runner.task.train_loss = recorded

    runner, events = train(tmp_path, hook=keep_weights, preset="explode", epochs=1)
    skipped = [s for s in of(events, "step") if s.skipped]
    assert [s.step for s in skipped] == [3]
    assert [a.kind for a in of(events, "alarm") if a.step == 3][0] == "non_finite"
    assert any(not torch.equal(weights[2][name], weights[1][name]) for name in weights[1])  # a real update
    for name, tensor in weights[3].items():
        assert torch.equal(tensor, weights[2][name]), name  # the skipped one did not move the weights
    assert all(torch.isfinite(t).all() for t in runner.model.textbook_parameters().values())


def test_every_step_event_comes_once_in_order_before_what_follows_it(tmp_path):
    runner, events = train(tmp_path, preset="memory", epochs=3)
    steps = [e.step for e in events if e.type == "step"]
    assert steps == list(range(1, runner.step + 1))
    last_step = 0
    for event in events:
        if event.type == "step":
            last_step = event.step
        elif event.type in ("eval", "checkpoint", "status", "run_finished") and event.step > 0:
            assert last_step == event.step, event  # the steps run so far are all out before it
    for step_event, alarm in ((s, a) for a in of(events, "alarm") for s in of(events, "step") if s.step == a.step):
        assert events.index(step_event) < events.index(alarm)


def test_a_speed_cap_sends_each_step_event_during_its_step(tmp_path):
    seen = []

    def hook(runner):
        runner.emit_event = lambda event, emit=runner.emit_event: (
            seen.append((event.step, runner.step)) if event.type == "step" else None, emit(event))

    train(tmp_path, hook=hook, preset="explode", epochs=1, speed=1000.0)
    assert seen and all(step == current for step, current in seen)


def test_steps_per_s_under_a_speed_cap_reads_the_cap_even_after_a_slow_step(tmp_path):
    def slow_first_step(runner):
        loss = runner.task.train_loss

        def slow(model, batch):
            if runner.step == 0:  # a first step that takes long (torch warming up does)
                time.sleep(0.2)
            return loss(model, batch)

        runner.task.train_loss = slow

    _, events = train(tmp_path, hook=slow_first_step, preset="explode", epochs=2, speed=50.0)
    rates = [s.steps_per_s for s in of(events, "step")]
    assert len(rates) == 10 and all(0 < rate <= 50 * 1.05 for rate in rates), rates


def test_a_fast_first_step_under_a_speed_cap_reads_the_cap(tmp_path):
    _, events = train(tmp_path, preset="explode", epochs=1, speed=20.0)
    first = of(events, "step")[0]
    assert 0 < first.steps_per_s <= 20.0  # its own time alone would read about 500 steps/s


def test_time_spent_paused_does_not_lower_the_steps_per_s_after_it(tmp_path, monkeypatch):
    from engine import runner as runner_module

    clock = {"offset": 0.0}
    fake_time = types.SimpleNamespace(**{name: getattr(time, name) for name in ("sleep", "strftime")},
                                      monotonic=lambda: time.monotonic() + clock["offset"])
    monkeypatch.setattr(runner_module, "time", fake_time)

    class Script(Commands):
        def wait(self, timeout):  # paused: the student reads the screen for 100 s, then continues
            clock["offset"] += 100.0
            return [cmd.Resume()]

    commands = Script({30: [cmd.Pause()]})
    _, events = train(tmp_path, commands, hook=lambda r: setattr(commands, "runner", r), preset="explode", epochs=12)
    after = [s.steps_per_s for s in of(events, "step") if 30 <= s.step < 50]
    assert len(after) == 20 and min(after) > 1.0, after  # 19 steps in 100 s would read 0.19


def test_commands_act_at_the_next_step_boundary(tmp_path):
    script = {
        2: [cmd.SetClip(on=True, max_norm=7.0)],
        3: [cmd.SetLr(lr=0.01), cmd.SetClip(on=True, max_norm=0.5, norm_type="inf")],
        4: [cmd.SetClip(on=False)],
        5: [cmd.Predict(input="6 7"), cmd.Predict(input="6 x"), cmd.GatesCommand(input="1 2 3")],
    }
    commands = Commands(script)
    _, events = train(tmp_path, commands, hook=lambda r: setattr(commands, "runner", r), preset="explode", epochs=2)
    settings = settings_of_steps(events)
    assert not settings[1].clip_on and settings[1].cause == "start"
    assert settings[2].clip_on and settings[2].clip_max_norm == 7.0 and settings[2].cause == "command"
    assert settings[3].lr == 0.01 and settings[3].clip_norm_type == "inf" and settings[3].clip_max_norm == 0.5
    assert not settings[4].clip_on and settings[4].clip_max_norm == 0.5  # the threshold is kept while off
    assert [s.step for s in of(events, "settings")] == [0, 1, 2, 2, 3]  # each answers its command at once
    prediction = of(events, "prediction")[0]
    assert prediction.tokens[:2] == ["6", "7"] and len(prediction.top) == 3 and prediction.target == 13
    assert any(n.level == "error" and "'x' is not a digit" in n.message for n in of(events, "notice"))
    assert any(g.request == "1 2 3" and g.tokens[:3] == ["1", "2", "3"] for g in of(events, "gates"))
    # the console's input stays shown: each evaluation refreshes its heatmaps, not the probe's
    later = [g.request for g in of(events, "gates") if g.step >= 4]
    assert later == ["1 2 3"] * 3


def test_pause_single_step_and_stop(tmp_path):
    class Script(Commands):
        def wait(self, timeout):
            # while paused, the user asks for two single steps, then stops
            return self.pending.pop(0) if self.pending else [cmd.Stop()]

    commands = Script({3: [cmd.Pause()]})
    commands.pending = [[cmd.StepCommand(n=1)], [cmd.StepCommand(n=1)]]
    runner, events = train(tmp_path, commands, hook=lambda r: setattr(commands, "runner", r), preset="explode")
    states = [s.state for s in of(events, "status")]
    assert states[:3] == ["running", "paused", "running"] and states[-1] == "stopped"
    assert len(of(events, "step")) == 4  # two steps, pause, then exactly two single steps
    assert of(events, "run_finished")[0].reason == "stopped"
    assert ckpt.load(runner.last_path)["step"] == 4


def test_pause_on_alarm_pauses_at_the_step_of_the_first_explosion(tmp_path):
    class Script(Commands):
        def wait(self, timeout):  # paused: the answer is clipping and continuing, once
            return self.pending.pop(0) if self.pending else [cmd.Stop()]

    commands = Script({})
    commands.pending = [[cmd.SetClip(on=True, max_norm=20.0), cmd.Resume()]]
    _, events = train(tmp_path, commands, hook=lambda r: setattr(commands, "runner", r), preset="explode",
                      pause_on_alarm=True, epochs=4)
    explosion = next(e for e in events if e.type == "alarm" and e.kind == "explosion")
    after = events[events.index(explosion) + 1:]
    assert after[0].type == "status" and after[0].state == "paused"  # before any later step
    # the heatmaps show the hidden state as the explosion left it, not as the last evaluation saw it
    assert after[1].type == "gates" and after[1].step == explosion.step and after[1].matrices["hidden"]
    assert next(e for e in after if e.type == "step").step == explosion.step + 1
    assert [s.state for s in of(events, "status")].count("paused") == 1  # the first explosion only
    assert settings_of_steps(events)[explosion.step + 1].clip_on


def test_rewind_restores_weights_and_optimizer_state_exactly_as_snapshotted(tmp_path):
    """Adam keeps moments: a rewind must restore them with the weights, and later training must not
    alter the snapshot it came from (a second rewind to it gives the same state again)."""
    commands = Commands({30: [cmd.Rewind()], 33: [cmd.Rewind()]})
    kept = {}

    def hook(runner):
        commands.runner = runner
        take = runner._take_snapshot

        def recorded():
            take()
            kept[runner.step] = (ckpt.snapshot_parameters(runner.model), _copy_state(runner.optimizer.state_dict()))

        runner._take_snapshot = recorded
        train_step = runner._train_step

        def step_and_compare(batch):
            if runner.step in (29, 32):  # the step after each rewind starts from step 25's state
                weights, state = kept[25]
                current = ckpt.snapshot_parameters(runner.model)
                assert all(torch.equal(current[name], weights[name]) for name in weights)
                assert_same_state(runner.optimizer.state_dict(), state)
            train_step(batch)

        runner._train_step = step_and_compare

    runner, events = train(tmp_path, commands, hook=hook, preset="memory", cell="lstm", length=5, epochs=2)
    # a healthy run: said in the console, not as a recovery ("healthy again") in the alarms' story
    assert not of(events, "alarm")
    rewinds = [notice for notice in of(events, "notice") if "rewound" in notice.message]
    assert [notice.message for notice in rewinds] == ["rewound to the weights of step 25"] * 2
    for rewind in rewinds:  # the heatmaps are redrawn from the weights rewound to
        assert any(e.type == "gates" and e.step == rewind.step for e in events[events.index(rewind):])
    assert [s.step for s in of(events, "step")] == list(range(1, runner.step + 1))  # the count goes on
    assert [s.cause for s in of(events, "settings")] == ["start", "rewind", "rewind"]


def test_a_rewind_after_an_explosion_ends_the_alarms_story(tmp_path):
    commands = Commands({59: [cmd.Rewind(), cmd.Resume()]})  # answered at the explosion's pause
    runner, events = train(tmp_path, commands, hook=lambda runner: setattr(commands, "runner", runner),
                           preset="rescue", epochs=62)
    alarms = of(events, "alarm")
    assert (alarms[0].kind, alarms[0].step) == ("explosion", 58)
    assert [(a.kind, a.message) for a in alarms[1:]] == [("healthy", "rewound to the weights of step 50")]


def _copy_state(state):
    from engine.checkpoint import copy_state

    return copy_state(state)


def assert_same_state(actual, expected):
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, list):
            assert len(actual[key]) == len(value), key
            for a, b in zip(actual[key], value):
                assert torch.equal(a, b) if isinstance(b, torch.Tensor) else a == b, key
        else:
            assert actual[key] == value, key


def test_best_and_last_checkpoints_load_with_weights_only(tmp_path):
    runner, events = train(tmp_path, preset="explode", epochs=2)
    for path in (runner.best_path, runner.last_path):
        payload = torch.load(path, weights_only=True)
        assert payload["config"]["cell"] == "srn" and set(payload["parameters"]) >= {"W", "U", "b"}
    assert {c.kind for c in of(events, "checkpoint")} == {"best", "last"}
    finished = of(events, "run_finished")[0]
    assert finished.reason == "finished" and finished.test_accuracy is not None


def test_resume_continues_where_the_run_stopped(tmp_path):
    first, _ = train(tmp_path, preset="memory", cell="lstm", length=5, epochs=1, eval_steps=10)
    payload = ckpt.load(first.last_path)
    events = []
    config = build_config(preset="memory", cell="lstm", length=5, epochs=2, eval_steps=10,
                          checkpoint_dir=str(tmp_path / "more"))
    resumed = Runner(config, events.append, resume=payload)
    assert resumed.step == first.step
    for name, tensor in resumed.model.textbook_parameters().items():
        torch.testing.assert_close(tensor, payload["parameters"][name])
    resumed.run()
    steps = of(events, "step")
    assert steps[0].step == first.step + 1 and steps[-1].step == 2 * first.step


def test_healthy_lstm_training_raises_no_explosion_alarm(tmp_path):
    _, events = train(tmp_path, preset="memory", cell="lstm", length=5, epochs=4, eval_steps=50)
    assert not [a for a in of(events, "alarm") if a.kind == "explosion"]


def test_the_numeric_preset_explodes_without_clipping_and_stays_bounded_with_it(tmp_path):
    _, events = train(tmp_path, preset="numeric", epochs=10)
    totals = [s.total_norm for s in of(events, "step")]
    first = next(t for t in totals if t > 0)
    assert max(totals) > 100 * first
    _, clipped = train(tmp_path, preset="numeric", clip=1.0, epochs=100)
    steps = of(clipped, "step")
    assert all(s.total_norm * s.clip_factor <= 1 + 1e-4 for s in steps)
    dev = [e for e in of(clipped, "eval") if e.split == "dev"]
    assert dev[-1].loss < 0.1 * dev[0].loss  # it learns
