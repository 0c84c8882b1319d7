"""A few steps of the language-model task through the real Runner."""

from __future__ import annotations

import math

import torch

from engine import checkpoint as ckpt
from engine import commands as cmd
from engine import events as ev
from engine.generate import load_generator, predict
from engine.runner import Runner


def test_runner_trains_the_lm_task_and_keeps_the_best_validation_checkpoint(tmp_path, tiny_config,
                                                                           timemachine_text):
    folder = tmp_path / "data" / "corpus"
    folder.mkdir(parents=True)
    # a BOM and CRLF line ends, as the Gutenberg file comes
    (folder / "timemachine.txt").write_bytes(("\ufeff" + timemachine_text[:4000].replace("\n", "\r\n")).encode())
    config = tiny_config(data_dir=str(tmp_path / "data"), checkpoint_dir=str(tmp_path / "checkpoints"),
                         runs_dir=str(tmp_path / "runs"), batch_size=8, seq_len=10, epochs=2, eval_steps=10,
                         optimizer="adam", lr=0.01, log_steps=100, run_id="lm-test")
    events: list[ev.Event] = []
    runner = Runner(config, events.append)
    assert runner.task.steps_per_epoch == 44
    assert runner.run() == "finished"

    started = events[0]
    assert isinstance(started, ev.RunStarted) and started.vocabulary[0] == "<unk>"
    assert "\r" not in started.vocabulary and "\ufeff" not in started.vocabulary
    steps = [e for e in events if isinstance(e, ev.Step)]
    assert len(steps) == 88 and all(math.isfinite(s.loss) for s in steps)
    settings = [e for e in events if isinstance(e, ev.Settings)]
    assert "W_f" in steps[0].grad_norms and settings[0].clip_on and settings[0].clip_max_norm == 1.0
    evals = [e for e in events if isinstance(e, ev.Eval) and e.split == "dev"]
    assert len(evals) == 9  # every 10 steps and at the last
    assert all(e.perplexity is not None and e.accuracy is None for e in evals)
    assert evals[-1].perplexity < evals[0].perplexity  # it learns
    best = min(e.perplexity for e in evals)
    assert evals[-1].best == best  # lower perplexity is better
    for e, earlier in zip(evals, [math.inf] + [min(x.perplexity for x in evals[:i]) for i in range(1, len(evals))]):
        assert e.is_best == (e.perplexity < earlier)
    gates = [e for e in events if isinstance(e, ev.Gates)]
    assert gates[0].tokens == list("time traveller") and "forget_gate" in gates[0].matrices
    test = [e for e in events if isinstance(e, ev.Eval) and e.split == "test"]
    # the best weights on the test half of the held-out text, which no choice of weights has seen
    assert len(test) == 1 and math.isfinite(test[0].perplexity) and not math.isclose(test[0].perplexity, best)

    # best.pt holds the weights of the best validation perplexity, and generates
    best_path = tmp_path / "checkpoints" / "lm-test" / "best.pt"
    payload = ckpt.load(str(best_path))
    assert math.isclose(payload["best"], best)
    model, vocab, _ = load_generator(str(best_path))
    assert math.isclose(runner.task.evaluate(model, "dev")[0], best, rel_tol=1e-5)
    assert predict(model, vocab, "time", 20).startswith("time")


def test_generate_command_streams_during_training(tmp_path, tiny_config, timemachine_text):
    folder = tmp_path / "data" / "corpus"
    folder.mkdir(parents=True)
    (folder / "timemachine.txt").write_text(timemachine_text[:2000], encoding="utf-8")
    config = tiny_config(data_dir=str(tmp_path / "data"), checkpoint_dir=str(tmp_path / "checkpoints"),
                         runs_dir=str(tmp_path / "runs"), run_id="lm-generate")
    events: list[ev.Event] = []
    runner = Runner(config, events.append)
    weights = {name: tensor.clone() for name, tensor in runner.model.textbook_parameters().items()}
    runner._apply(cmd.Generate(prefix="time", length=9, temperature=0.8, seed=1, request_id=2))
    chunks = [e for e in events if isinstance(e, ev.Generation)]
    assert [len(c.text) for c in chunks] == [4, 4, 1] and chunks[-1].done
    assert all(c.request_id == 2 and c.prefix == "time" and c.run == "lm-generate" for c in chunks)
    assert all(torch.equal(weights[name], tensor) for name, tensor in runner.model.textbook_parameters().items())
    runner._apply(cmd.Predict(input="time"))
    assert isinstance(events[-1], ev.Notice) and events[-1].level == "error"
