"""A run forked into two branches trained in lockstep: the same weights, optimiser state and batches."""

import time
import types

import pytest

from engine import commands as cmd

from engine import events as ev
from engine import logs
from engine.config import build_config
from engine.runner import Runner
from engine.session import run_session


def forked(tmp_path, change: str, at: int = 5, **options):
    """Train a small explosion run forked after ``at`` steps; the two logs' events."""
    options = {"preset": "explode", "epochs": 4, **options}
    config = build_config(options.pop("preset"), checkpoint_dir=str(tmp_path / "checkpoints"),
                          runs_dir=str(tmp_path / "runs"), **options)
    log = str(tmp_path / "run.jsonl")
    reason, path = run_session(config, events_path=log, fork_at=(at, cmd.Fork.parse(change)))
    assert reason == "finished" and path == log
    first, bad = logs.read_log(log)
    second, bad_second = logs.read_log(str(tmp_path / "run-b.jsonl"))
    assert bad == bad_second == 0
    return first, second


def test_time_spent_paused_does_not_lower_the_second_branchs_steps_per_s(tmp_path, monkeypatch):
    from engine import runner as runner_module

    clock = {"offset": 0.0}
    fake_time = types.SimpleNamespace(**{name: getattr(time, name) for name in ("sleep", "strftime")},
                                      monotonic=lambda: time.monotonic() + clock["offset"])
    monkeypatch.setattr(runner_module, "time", fake_time)
    second = []

    class Script:  # paused before step 30 and forked there; the student reads the screen for 100 s
        runner = None

        def poll(self):
            return [cmd.Pause(), cmd.Fork.parse("clip=1")] if self.runner.step == 29 else []

        def wait(self, timeout):
            clock["offset"] += 100.0
            return [cmd.Resume()]

    commands = Script()
    config = build_config("explode", epochs=12, checkpoint_dir=str(tmp_path / "checkpoints"))
    runner = commands.runner = Runner(config, lambda event: None, commands)
    runner.open_branch_writer = lambda run_id: types.SimpleNamespace(emit=second.append, error="")
    runner.run()
    after = [e.steps_per_s for e in second if type(e) is ev.Step and 30 <= e.step < 50]
    assert len(after) == 20 and min(after) > 1.0, after  # 19 steps in 100 s would read 0.19


def losses(events):
    return {event.step: event.loss for event in events if type(event) is ev.Step}


def test_a_fork_that_changes_nothing_trains_bit_identical_branches(tmp_path):
    first, second = forked(tmp_path, "lr=0.2")  # the run's own lr
    a, b = losses(first), losses(second)
    assert sorted(b) == list(range(6, 21))  # the second branch starts after the fork step
    assert {step: a[step] for step in b} == b  # bit for bit: the same floats
    norms_a = {e.step: e.grad_norms for e in first if type(e) is ev.Step}
    assert all(norms_a[e.step] == e.grad_norms for e in second if type(e) is ev.Step)
    evals = lambda events: [(e.step, e.accuracy, e.loss) for e in events if type(e) is ev.Eval and e.step > 5]
    assert evals(first) == evals(second)
    epochs = lambda events: {e.step: e.epoch for e in events if type(e) is ev.Step and e.step > 5}
    assert epochs(first) == epochs(second)  # each step in the epoch of its batch, the first of an epoch too


def test_clipping_one_branch_changes_it_from_the_fork_on(tmp_path):
    first, second = forked(tmp_path, "clip=1", at=2)
    a, b = losses(first), losses(second)
    assert min(b) == 3
    started = next(e for e in second if type(e) is ev.RunStarted)
    assert started.run.endswith("-b") and started.config["fork_step"] == 2
    assert started.config["forked_from"] == next(e for e in first if type(e) is ev.RunStarted).run
    assert started.config["clip"] == 1.0
    change = next(e for e in second if type(e) is ev.Settings and e.cause == "fork")
    assert change.clip_on and change.clip_max_norm == 1.0 and change.step == 2
    # step 3 is computed from the same weights and batch (clipping acts after the loss): the same
    # loss; from step 4 on the clipped update has made the weights differ
    assert b[3] == a[3]
    assert all(b[step] != a[step] for step in range(4, 21))
    assert all(e.clip_factor < 1 for e in second if type(e) is ev.Step)
    assert all(e.clip_factor == 1 for e in first if type(e) is ev.Step)
    finished = [e for e in second if type(e) is ev.RunFinished]
    assert len(finished) == 1 and finished[0].reason == "finished"


def test_the_second_log_is_a_run_of_its_own_and_both_are_compressed(tmp_path):
    config = build_config("explode", epochs=2, checkpoint_dir=str(tmp_path / "checkpoints"),
                          runs_dir=str(tmp_path / "runs"))
    reason, path = run_session(config, fork_at=(1, cmd.Fork.parse("clip=none")))
    assert path.endswith(".jsonl.gz")
    second, bad = logs.read_log(path[: -len(".jsonl.gz")] + "-b.jsonl.gz")
    assert bad == 0 and type(second[0]) is ev.RunStarted and second[0].schema == ev.SCHEMA_VERSION
    assert type(second[-1]) is ev.RunFinished


@pytest.mark.parametrize("text, fragment", [
    ("clip", "clip=MAX_NORM"), ("speed=3", "not 'speed=3'"), ("lr=fast", "takes a number"),
    ("max_norm=-1", "positive"), ("lr=nan", "positive"),
])
def test_a_bad_change_is_refused_in_one_line(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        cmd.Fork.parse(text)


def test_changes_parse():
    assert cmd.Fork.parse("clip=1") == cmd.Fork(setting="clip", value=1.0)
    assert cmd.Fork.parse(" clip = none ") == cmd.Fork(setting="clip", value=None)
    assert cmd.Fork.parse("max_norm=5").describe() == "clip 5"
    assert cmd.Fork.parse("lr=0.05").describe() == "lr 0.05"
