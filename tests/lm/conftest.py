"""Tiny language models on slices of the shipped corpora, so every test runs in a few seconds."""

from __future__ import annotations

import pytest
import torch

from engine.config import build_config
from engine.corpus import Vocabulary, corpus_path, read_corpus
from engine.models import LanguageModel


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine they lose a lot waiting for it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def timemachine_text() -> str:
    config = build_config("lm-timemachine")
    return read_corpus(corpus_path(config.data_root, "timemachine"))


@pytest.fixture()
def tiny_config():
    def make(**overrides):
        values = dict(hidden=16, embed=8, batch_size=4, seq_len=5, epochs=1, seed=3)
        values.update(overrides)
        return build_config("lm-timemachine", **values)

    return make


@pytest.fixture()
def tiny_model(tiny_config, timemachine_text):
    """(model, vocabulary, config): an untrained LSTM over the Time Machine's characters."""
    config = tiny_config()
    vocab = Vocabulary(timemachine_text)
    torch.manual_seed(0)
    return LanguageModel(config, len(vocab)), vocab, config
