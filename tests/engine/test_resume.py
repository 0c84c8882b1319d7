"""A run stopped at any step and resumed is the uninterrupted run, step for step."""

from __future__ import annotations

import pytest
import torch

from engine import checkpoint as ckpt
from engine import commands as cmd
from engine import events as ev
from engine.config import build_config
from engine.runner import Runner


class StopBefore:
    """A command channel that asks the run to stop just before step ``step`` runs."""

    def __init__(self, step: int):
        self.step, self.runner = step, None

    def poll(self):
        return [cmd.Stop()] if self.runner.step + 1 == self.step else []

    def wait(self, timeout):
        return self.poll()


def what_happened(events) -> list[tuple]:
    """What a run did, without the times and paths that differ between runs."""
    seen = []
    for event in events:
        if isinstance(event, ev.Step):
            seen.append(("step", event.step, event.epoch, event.loss, tuple(event.grad_norms.items()),
                         event.total_norm, event.clip_factor, event.skipped))
        elif isinstance(event, ev.Eval):
            seen.append(("eval", event.step, event.split, event.accuracy, event.perplexity, event.loss, event.best))
        elif isinstance(event, ev.Alarm):
            seen.append(("alarm", event.step, event.kind, event.parameter, event.value, event.ratio))
    return seen


def run(config, resume=None, stop_before=None):
    events: list[ev.Event] = []
    commands = StopBefore(stop_before) if stop_before else None
    runner = Runner(config, events.append, commands, resume=resume)
    if commands:
        commands.runner = runner
    reason = runner.run()
    return runner, events, reason


def assert_resumed_run_is_the_whole_run(config, stop_before):
    whole, whole_events, _ = run(config)
    first, first_events, reason = run(config, stop_before=stop_before)
    assert reason == "stopped" and first.step == stop_before - 1
    payload = ckpt.load(first.last_path)
    second, second_events, reason = run(config.__class__(**{**config.to_dict(), "resume": first.last_path,
                                                            "run_id": ""}), resume=payload)
    assert reason == "finished"
    stopped_part = [e for e in what_happened(first_events) if not (e[0] == "eval" and e[2] == "test")]
    assert stopped_part + what_happened(second_events) == what_happened(whole_events)
    final, expected = ckpt.snapshot_parameters(second.model), ckpt.snapshot_parameters(whole.model)
    assert all(torch.equal(final[name], expected[name]) for name in expected)


@pytest.mark.parametrize("stop_before", [2, 39, 45, 76])  # mid-epoch and at an epoch's first batch (38 a epoch)
def test_a_digit_run_stopped_and_resumed_is_the_uninterrupted_run(tmp_path, stop_before):
    config = build_config("memory", cell="lstm", length=5, epochs=3, eval_steps=20, shuffle=True,
                          checkpoint_dir=str(tmp_path), runs_dir=str(tmp_path))
    assert_resumed_run_is_the_whole_run(config, stop_before)


def test_an_explosion_stopped_in_the_middle_raises_the_same_alarms_when_resumed(tmp_path):
    config = build_config("explode", epochs=4, checkpoint_dir=str(tmp_path), runs_dir=str(tmp_path))
    assert_resumed_run_is_the_whole_run(config, stop_before=4)  # between the first jump and the explosion


def test_a_language_model_resumed_mid_epoch_carries_its_state_on(tmp_path):
    from engine.corpus import corpus_path, read_corpus

    text = read_corpus(corpus_path(build_config("lm-timemachine").data_root, "timemachine"))
    folder = tmp_path / "data" / "corpus"
    folder.mkdir(parents=True)
    (folder / "timemachine.txt").write_text(text[:3000])
    config = build_config("lm-timemachine", data_dir=str(tmp_path / "data"), hidden=16, embed=8, batch_size=4,
                          seq_len=8, epochs=2, eval_steps=15, sampling="sequential", seed=3,
                          checkpoint_dir=str(tmp_path), runs_dir=str(tmp_path))
    assert_resumed_run_is_the_whole_run(config, stop_before=30)
