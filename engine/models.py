"""Models around the recurrent layer: the digit-sum classifier (NNDL's Model_RNN4SeqClass) and its
regression variant. Every model names its tensors the textbook's way for the monitor."""

from __future__ import annotations

import math

import torch
from torch import nn

from .cells import Recurrent, initialise, uniform
from .config import TrainConfig
from .data import NUM_CLASSES


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


def build_model(config: TrainConfig, vocab_size: int = 0) -> TextbookNamed:
    if config.task == "lm":
        from .lm import LanguageModel  # the language-model task's own module

        return LanguageModel(config, vocab_size)
    return DigitSumModel(config)
