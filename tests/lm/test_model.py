"""The language model, its textbook names, and the task's training step, evaluation and gates."""

from __future__ import annotations

import math
import os

import pytest
import torch

from engine.config import ConfigError, build_config
from engine.corpus import Vocabulary
from engine.lm import LanguageModelTask
from engine.models import LanguageModel


def small_corpus(tmp_path, text: str) -> str:
    """A data root whose corpus/timemachine.txt is ``text``."""
    folder = tmp_path / "data" / "corpus"
    folder.mkdir(parents=True)
    (folder / "timemachine.txt").write_text(text, encoding="utf-8")
    return str(tmp_path / "data")


@pytest.fixture()
def task(tmp_path, tiny_config, timemachine_text):
    def make(**overrides):
        config = tiny_config(data_dir=small_corpus(tmp_path, timemachine_text[:3000]), **overrides)
        return LanguageModelTask(config, torch.device("cpu")), config

    return make


@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_textbook_names_and_shapes(tiny_config, cell, impl):
    config = tiny_config(cell=cell, impl=impl, layers=2)
    model = LanguageModel(config, 30)
    names = list(model.textbook_parameters())
    assert names[0] == "embedding" and names[-2:] == ["linear.weight", "linear.bias"]
    assert ("W_f" in names) == (cell == "lstm") and ("W.l1" in names) == (cell == "srn")
    logits, state = model(torch.zeros(3, 7, dtype=torch.long))
    assert logits.shape == (3, 7, 30)


def test_one_hot_input_has_no_embedding(tiny_config):
    model = LanguageModel(tiny_config(embed=0), 30)
    assert "embedding" not in model.textbook_parameters()
    assert model.textbook_parameters()["W_i"].shape == (30, 16)  # one input row per character


def test_torch_and_scratch_compute_the_same_function(tiny_config):
    torch_model = LanguageModel(tiny_config(impl="torch"), 30)
    scratch_model = LanguageModel(tiny_config(impl="scratch"), 30)
    scratch_model.load_textbook_parameters(torch_model.textbook_parameters())
    tokens = torch.randint(0, 30, (2, 9))
    assert torch.allclose(torch_model(tokens)[0], scratch_model(tokens)[0], atol=1e-5)


def test_bidirectional_model_reads_both_ways(tiny_config):
    model = LanguageModel(tiny_config(bidirectional=True, layers=2), 30)
    assert model.linear.in_features == 32 and "U_c.l1.rev" in model.textbook_parameters()
    assert model(torch.zeros(2, 4, dtype=torch.long))[0].shape == (2, 4, 30)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_is_carried_and_detached_between_sequential_batches(task, cell):
    lm, config = task(cell=cell)
    model = LanguageModel(config, len(lm.vocabulary))
    batches = lm.batches(1)
    lm.start_epoch()
    first = lm.train_loss(model, next(batches))
    carried = lm.state
    parts = carried if isinstance(carried, tuple) else (carried,)
    for part in parts:
        assert part.grad_fn is None and not part.requires_grad  # no path back into the previous batch
        assert part.abs().sum() > 0  # ... but its values are carried
    first.backward()  # frees the first batch's graph
    second = lm.train_loss(model, next(batches))
    second.backward()  # would fail ("backward through the graph a second time") if the state were attached
    lm.start_epoch()
    assert lm.state is None  # a new epoch, a new offset: a fresh state


def test_random_sampling_starts_each_batch_afresh(task):
    lm, config = task(sampling="random")
    model = LanguageModel(config, len(lm.vocabulary))
    lm.start_epoch()
    lm.train_loss(model, next(lm.batches(1)))
    assert lm.state is None


def test_evaluate_returns_perplexity_and_loss(task):
    lm, config = task()
    model = LanguageModel(config, len(lm.vocabulary))
    perplexity, loss = lm.evaluate(model, "dev")
    assert math.isclose(perplexity, math.exp(loss), rel_tol=1e-9)
    assert 1 < perplexity < 2 * len(lm.vocabulary)  # an untrained model is near uniform
    assert model.training  # evaluation leaves the model as it found it
    assert lm.higher_is_better is False and lm.score_name == "perplexity"


def test_gates_label_columns_with_the_prefix(task):
    lm, config = task()
    model = LanguageModel(config, len(lm.vocabulary))
    tokens, matrices = lm.gates(model, "time\ntr")
    assert tokens == ["t", "i", "m", "e", "⏎", "t", "r"]
    assert set(matrices) >= {"input_gate", "forget_gate", "output_gate", "cell_state"}
    assert len(matrices["forget_gate"]) == 16 and len(matrices["forget_gate"][0]) == 7
    assert lm.gates(model, "")[0] == list("time traveller")  # the probe
    with pytest.raises(ValueError):
        lm.predict(model, "time")


def test_gate_values_travel_to_two_decimals(task):
    lm, config = task()
    model = LanguageModel(config, len(lm.vocabulary))
    _, matrices = lm.gates(model, "time")
    exact = model.record_gates(torch.tensor(lm.vocab.encode("time"), dtype=torch.long))
    for name, rows in matrices.items():
        assert torch.allclose(torch.tensor(rows), exact[name].float(), rtol=0, atol=5e-3 + 1e-6), name
        assert all(value == round(value, 2) for row in rows for value in row)


def test_checkpoint_extra_holds_the_vocabulary(task):
    lm, _ = task()
    extra = lm.checkpoint_extra()
    assert extra["vocabulary"][0] == "<unk>" and Vocabulary(tokens=extra["vocabulary"]).encode("t")


def test_a_corpus_too_short_for_the_batch_is_refused(tmp_path, tiny_config):
    config = tiny_config(data_dir=small_corpus(tmp_path, "short text\n" * 3), batch_size=64)
    with pytest.raises(ConfigError):
        LanguageModelTask(config, torch.device("cpu"))


def test_presets_are_language_models():
    for name in ("lm-timemachine", "lm-tangshi"):
        config = build_config(name)
        assert config.task == "lm" and config.clip == 1.0 and config.cell == "lstm"
        assert os.path.isfile(os.path.join(config.data_root, "corpus", f"{config.corpus}.txt"))
