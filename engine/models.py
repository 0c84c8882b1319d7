"""Models around the recurrent layer: the digit-sum classifier (NNDL's Model_RNN4SeqClass) and its
regression variant, and the character language model of d2l 8.5 / 9.2. Every model names its tensors
the textbook's way for the monitor."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .cells import Recurrent
from .config import TrainConfig
from .data import NUM_CLASSES
from .parameters import initialise, uniform


class TextbookNamed(nn.Module):
    """Mixin: the model's tensors under textbook names (``embedding``, ``W``, ``U_i``, ``linear.weight``)."""

    rnn: Recurrent

    def _named(self, gradients: bool) -> dict:
        named = {}
        for name, module in self._outer_modules():
            if module is self.rnn:
                named.update(self.rnn.textbook_gradients() if gradients else self.rnn.textbook_parameters())
                continue
            for suffix, parameter in module.named_parameters():
                named[f"{name}.{suffix}" if name != "embedding" else name] = (
                    parameter.grad if gradients else parameter)
        return named

    def textbook_parameters(self) -> dict[str, torch.Tensor]:
        return self._named(gradients=False)

    def textbook_gradients(self) -> dict[str, torch.Tensor | None]:
        return self._named(gradients=True)

    def load_textbook_parameters(self, values: dict[str, torch.Tensor]) -> None:
        missing = [name for name in self.textbook_parameters() if name not in values]
        if missing:
            raise KeyError(f"missing tensors: {', '.join(missing)}")
        with torch.no_grad():
            for name, target in self.textbook_parameters().items():
                if tuple(values[name].shape) != tuple(target.shape):
                    raise ValueError(f"{name}: shape {tuple(values[name].shape)} does not fit {tuple(target.shape)}")
                target.copy_(values[name])

    def _outer_modules(self):
        raise NotImplementedError


def initialise_model(model: "TextbookNamed", scheme: str, seed: int) -> None:
    """Every tensor of the model, by textbook name, from one seeded generator: the same seed gives
    the same weights with ``--impl torch`` and ``--impl scratch``.

    The recurrent layer follows ``scheme``. The embedding and output layer take Paddle's defaults
    (Xavier-uniform weights, zero bias), except that with the explosion chapter's ``zeros`` (W, U, b
    of the SRN all zero) the embedding starts small, N(0, 0.01^2): the first updates then leave the
    hidden units unsaturated while U grows, which is when the gradients explode. ``torch`` gives
    every tensor PyTorch's recurrent default, U(-1/sqrt(hidden), 1/sqrt(hidden)).
    """
    generator = torch.Generator().manual_seed(seed)
    hidden = model.rnn.hidden
    recurrent = set(model.rnn.names)
    with torch.no_grad():
        for name, tensor in model.textbook_parameters().items():
            if name in recurrent or scheme == "torch":
                initialise({name: tensor}, scheme, hidden, generator)
            elif name == "embedding" and scheme == "zeros":
                tensor.normal_(0.0, 0.01, generator=generator)
            elif name.endswith("bias"):
                tensor.zero_()
            else:
                fan_out, fan_in = tensor.shape
                tensor.copy_(uniform(tensor.shape, math.sqrt(6.0 / (fan_in + fan_out)), generator))


class DigitSumModel(TextbookNamed):
    """Embedding(10, embed) -> recurrent layer -> last hidden state -> Linear(hidden, 19 or 1)."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.regression = config.head == "regression"
        self.embedding = nn.Embedding(10, config.embed)
        self.rnn = Recurrent(config.cell, config.impl, config.embed, config.hidden, init=config.resolved_init)
        self.linear = nn.Linear(config.hidden, 1 if self.regression else NUM_CLASSES)
        initialise_model(self, config.resolved_init, config.seed)

    def _outer_modules(self):
        return (("embedding", self.embedding), ("rnn", self.rnn), ("linear", self.linear))

    def embed(self, digits: torch.Tensor) -> torch.Tensor:
        """digits [batch, length] -> [batch, length, embed]."""
        return self.embedding(digits)

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        """digits [batch, length] -> logits [batch, 19] (or [batch] for the regression head)."""
        x = self.embedding(digits)  # [batch, length, embed]
        outputs, _ = self.rnn(x)  # [batch, length, hidden]
        logits = self.linear(outputs[:, -1])  # the last hidden state
        return logits.squeeze(-1) if self.regression else logits

    @torch.no_grad()
    def record_gates(self, digits: torch.Tensor) -> dict[str, torch.Tensor]:
        """digits [length] -> gate name -> [hidden, length], from the equations."""
        return self.rnn.record(self.embedding(digits.unsqueeze(0)))


class LanguageModel(TextbookNamed):
    """Embedding(vocab, embed) or one-hot (embed 0) -> Recurrent -> Linear(dirs*hidden, vocab).

    characters [batch, time] -> logits of the next character [batch, time, vocab]; its task (corpus,
    batches, perplexity) is in ``lm.py``."""

    def __init__(self, config: TrainConfig, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.one_hot = config.embed == 0  # d2l 8.5 feeds one-hot vectors; an embedding is the usual fix
        self.embedding = None if self.one_hot else nn.Embedding(vocab_size, config.embed)
        input_size = vocab_size if self.one_hot else config.embed
        self.rnn = Recurrent(config.cell, config.impl, input_size, config.hidden, layers=config.layers,
                             bidirectional=config.bidirectional, init=config.resolved_init)
        self.bidirectional = config.bidirectional
        self.linear = nn.Linear(config.hidden * self.rnn.directions, vocab_size)
        initialise_model(self, config.resolved_init, config.seed)

    def _outer_modules(self):
        modules = (("embedding", self.embedding), ("rnn", self.rnn), ("linear", self.linear))
        return tuple((name, module) for name, module in modules if module is not None)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, time] -> [batch, time, input]."""
        if self.one_hot:
            return F.one_hot(tokens, self.vocab_size).to(self.linear.weight.dtype)
        return self.embedding(tokens)

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens [batch, time] -> logits [batch, time, vocab], the state after the last step."""
        outputs, state = self.rnn(self.embed(tokens), state)  # [batch, time, dirs*hidden]
        return self.linear(outputs), state

    @torch.no_grad()
    def record_gates(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """tokens [time] -> gate name -> [hidden, time], from the first layer's equations."""
        return self.rnn.record(self.embed(tokens.unsqueeze(0)))


# Decimals a gate heatmap's values are sent with: the monitor shades ten levels and writes the
# ranges to two decimals; a Gates event of float32 reprs is eight times longer, and a memory run's
# log carries 191 of them (5 matrices of 32x10).
GATE_DECIMALS = 2


def heatmap_lists(matrices: dict[str, torch.Tensor]) -> dict[str, list[list[float]]]:
    """Gate name -> [hidden][time] matrix as lists of floats rounded for the Gates event."""
    return {name: [[round(value, GATE_DECIMALS) for value in row] for row in matrix.cpu().tolist()]
            for name, matrix in matrices.items()}


def build_model(config: TrainConfig, vocab_size: int = 0) -> TextbookNamed:
    if config.task == "lm":
        return LanguageModel(config, vocab_size)
    return DigitSumModel(config)
