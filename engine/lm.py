"""The task that trains the character language model of d2l 8.5 / 9.2 (``models.LanguageModel``).

    characters [batch, time] -> embedding (or one-hot) -> recurrent layers -> Linear over the vocabulary

The loss is the cross-entropy of the next character; the score is perplexity, exp(mean loss per
character): 1 is a model that is always sure and right, the vocabulary size one that guesses uniformly.
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn
from torch.nn import functional as F

from .config import PROBES, ConfigError, TrainConfig
from .corpus import SAMPLERS, Vocabulary, corpus_path, num_batches, read_corpus, split_text
from .generate import stream_events
from .models import LanguageModel, heatmap_lists

# The gate heatmaps' default input, the prefixes the textbooks continue.
MAX_GATE_CHARACTERS = 64  # heatmap columns; more would not fit a terminal
EVAL_ROWS = 8  # held-out text is read as this many parallel streams, each from a zero state
SATURATION_STEPS = 64  # characters per stream that gate saturation reads (the equations step in Python)


def detach_state(state):
    """Cut the graph at the batch boundary: the state's values go on, its history does not
    (d2l's ``state.detach_()``), so backpropagation stops at the start of each batch."""
    if state is None:
        return None
    if isinstance(state, tuple):  # the LSTM's (h, c)
        return tuple(part.detach() for part in state)
    return state.detach()


class LanguageModelTask:
    """A corpus, its vocabulary, minibatches of subsequences, perplexity and generation."""

    name = "lm"
    higher_is_better = False  # perplexity: lower is better
    score_name = "perplexity"

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config, self.device = config, device
        text = read_corpus(corpus_path(config.data_root, config.corpus))
        self.vocab = Vocabulary(text)  # over the whole text, as d2l builds it
        self.vocabulary = self.vocab.idx_to_token
        train_text, dev_text, test_text = split_text(text)
        self.tokens = {split: torch.tensor(self.vocab.encode(part), dtype=torch.long, device=device)
                       for split, part in (("train", train_text), ("dev", dev_text), ("test", test_text))}
        self.dataset_sizes = {split: len(tokens) for split, tokens in self.tokens.items()}  # characters
        self.steps_per_epoch = num_batches(len(train_text), config.batch_size, config.seq_len, config.sampling)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"the {config.corpus} training text ({len(train_text)} characters) is too short "
                              f"for --batch-size {config.batch_size} x --seq-len {config.seq_len}")
        self.loss_fn = nn.CrossEntropyLoss(reduction=config.loss_reduction)
        # The backward direction's final state belongs to the batch's first character: carrying it
        # into the next batch would make no sense, so a bidirectional model starts each batch afresh.
        self.carry_state = config.sampling == "sequential" and not config.bidirectional
        self.state = None  # the state carried from one sequential batch to the next
        self.probe = PROBES.get(config.corpus, train_text[:16])

    # --- training -----------------------------------------------------------

    def batches(self, epoch: int):
        """The epoch's minibatches X, Y [batch, seq_len]; the offset and order are seeded per epoch,
        so a resumed run sees the same batches."""
        rng = random.Random(self.config.seed * 1_000_003 + epoch)
        sampler = SAMPLERS[self.config.sampling]
        yield from sampler(self.tokens["train"], self.config.batch_size, self.config.seq_len, rng,
                           limit=self.steps_per_epoch)

    def start_epoch(self) -> None:
        """A new epoch starts at a new offset: the carried state belongs to the old one."""
        self.state = None

    def carried_state(self):
        """The state carried into the next batch (a tensor, a tuple of them, or None): a checkpoint
        keeps it, so a run resumed mid-epoch continues exactly."""
        return self.state

    def restore_carried_state(self, state) -> None:
        if isinstance(state, (tuple, list)):  # the LSTM's (h, c)
            state = tuple(part.to(self.device) for part in state)
        elif state is not None:
            state = state.to(self.device)
        self.state = state

    def train_loss(self, model: LanguageModel, batch) -> torch.Tensor:
        loss, state = self._loss(model, batch)
        if self.carry_state:
            self.state = detach_state(state)
        return loss

    def measured_loss(self, model: LanguageModel, batch) -> torch.Tensor:
        """The batch's loss from the state training starts it from, carrying nothing on: what the
        instruments differentiate over the truncated BPTT window."""
        return self._loss(model, batch)[0]

    def _loss(self, model: LanguageModel, batch):
        X, Y = batch  # [batch, seq_len]: Y is X one character on
        state = self.state if self.carry_state else None  # random sampling: a fresh state per batch
        logits, state = model(X, state)  # [batch, seq_len, vocab]
        return self.loss_fn(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1)), state

    def batch_of(self, split: str):
        """The split's first EVAL_ROWS windows of seq_len characters, as train_loss takes a batch."""
        tokens = self.tokens[split]
        rows = max(1, min(EVAL_ROWS, (len(tokens) - 1) // self.config.seq_len))
        span = rows * self.config.seq_len
        return tokens[:span].reshape(rows, -1), tokens[1:span + 1].reshape(rows, -1)

    def sequences(self, split: str) -> torch.Tensor:
        """The split's first characters as EVAL_ROWS streams [rows, SATURATION_STEPS], for gate saturation."""
        tokens = self.tokens[split]
        rows = max(1, min(EVAL_ROWS, (len(tokens) - 1) // 2))
        columns = min(SATURATION_STEPS, len(tokens) // rows)
        return tokens[:rows * columns].reshape(rows, columns)

    @torch.no_grad()
    def evaluate(self, model: LanguageModel, split: str) -> tuple[float, float]:
        """(perplexity, mean cross-entropy per character) of the split, read as EVAL_ROWS streams."""
        tokens = self.tokens[split]
        rows = max(1, min(EVAL_ROWS, (len(tokens) - 1) // 2))
        columns = (len(tokens) - 1) // rows
        X = tokens[:rows * columns].reshape(rows, columns)  # [rows, columns]
        Y = tokens[1:rows * columns + 1].reshape(rows, columns)
        was_training = model.training
        model.eval()
        logits, _ = model(X)  # [rows, columns, vocab]
        model.train(was_training)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1)).item()
        return (math.exp(loss) if loss < 700 else math.inf), loss

    # --- the console's questions -------------------------------------------

    @torch.no_grad()
    def gates(self, model: LanguageModel, text: str = "") -> tuple[list[str], dict[str, list[list[float]]]]:
        """Gate/state matrices [hidden][time] for the text (the probe prefix when empty), with the
        text's characters as column labels."""
        text = text or self.probe
        if len(text) > MAX_GATE_CHARACTERS:
            raise ValueError(f"gate heatmaps take at most {MAX_GATE_CHARACTERS} characters, not {len(text)}")
        tokens = torch.tensor(self.vocab.encode(text), dtype=torch.long, device=self.device)
        matrices = model.record_gates(tokens)
        labels = ["⏎" if char == "\n" else char for char in text]
        return labels, heatmap_lists(matrices)

    def predict(self, model, text: str) -> dict:
        raise ValueError("a language model continues text rather than classifying it: "
                         f"type a prefix to generate from (e.g. {self.probe})")

    def generate(self, model: LanguageModel, command, emit, notice) -> None:
        """Answer a Generate command: the continuation streams out as Generation events."""
        stream_events(model, self.vocab, command, emit, notice, self.device)

    def checkpoint_extra(self) -> dict:
        return {"vocabulary": list(self.vocabulary)}
