"""What a run learns: data batches, the loss, evaluation and the console's questions.

The runner is the same loop for every task; a task object supplies the rest. The digit-sum task lives
here; the character language model is in ``lm.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig
from .data import load_digits, load_numeric
from .digits import pad_digits, parse_digits
from .models import heatmap_lists


class DigitTask:
    """NNDL 6.1: digit sequences of length L, label = the sum of the first two digits."""

    name = "digits"
    higher_is_better = True  # accuracy
    score_name = "accuracy"

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config, self.device = config, device
        if config.dataset == "numeric":
            splits = load_numeric(config.length)
        else:
            splits = load_digits(config.data_root, config.length)
        self.tensors = {}
        for split, examples in splits.items():
            digits = torch.tensor([sequence for sequence, _ in examples], dtype=torch.long, device=device)
            labels = torch.tensor([label for _, label in examples], dtype=torch.long, device=device)
            self.tensors[split] = (digits, labels)  # [examples, length], [examples]
        self.dataset_sizes = {split: len(examples) for split, examples in splits.items()}
        self.vocabulary = [str(d) for d in range(10)]
        batch = config.batch_size
        self.steps_per_epoch = (self.dataset_sizes["train"] + batch - 1) // batch
        self.regression = config.head == "regression"
        if self.regression:
            self.loss_fn = nn.MSELoss(reduction=config.loss_reduction)
        else:
            self.loss_fn = nn.CrossEntropyLoss(reduction=config.loss_reduction)

    def batches(self, epoch: int):
        """The train batches of one epoch in the textbook's order (or shuffled, seeded per epoch)."""
        digits, labels = self.tensors["train"]
        order = None
        if self.config.shuffle:
            generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
            order = torch.randperm(len(labels), generator=generator).to(self.device)
        batch = self.config.batch_size
        for start in range(0, len(labels), batch):
            index = slice(start, start + batch) if order is None else order[start:start + batch]
            yield digits[index], labels[index]

    def start_epoch(self) -> None:
        """Nothing carries across the digit task's batches."""

    def carried_state(self):
        return None

    def restore_carried_state(self, state) -> None:
        pass

    def train_loss(self, model, batch) -> torch.Tensor:
        digits, labels = batch
        outputs = model(digits)
        return self.loss_fn(outputs, labels.float() if self.regression else labels)

    measured_loss = train_loss  # what the instruments differentiate: the digit task carries nothing on

    def batch_of(self, split: str):
        """The whole split as one batch (digits, labels), as train_loss takes it."""
        return self.tensors[split]

    def sequences(self, split: str) -> torch.Tensor:
        """The split's inputs [examples, length], for gate saturation."""
        return self.tensors[split][0]

    @torch.no_grad()
    def evaluate(self, model, split: str) -> tuple[float, float]:
        """(accuracy, mean loss per example) on a whole split in one batch."""
        digits, labels = self.tensors[split]
        model.eval()
        outputs = model(digits)
        model.train()
        if self.regression:
            loss = nn.functional.mse_loss(outputs, labels.float()).item()
            hits = (outputs - labels.float()).abs() <= 0.1
        else:
            loss = nn.functional.cross_entropy(outputs, labels).item()
            hits = outputs.argmax(dim=-1) == labels
        return hits.sum().item() / len(labels), loss  # counted: 5 of 100 is 0.05, not float32's 0.0500000007

    def _digits(self, text: str) -> list[int]:
        return parse_digits(text, self.config.length) if text.strip() else parse_digits(self.config.probe)

    @torch.no_grad()
    def gates(self, model, text: str = "") -> tuple[list[str], dict[str, list[list[float]]]]:
        """Gate/state matrices [hidden][time] for the input (the probe when text is empty)."""
        digits = pad_digits(self._digits(text), self.config.length)
        matrices = model.record_gates(torch.tensor(digits, dtype=torch.long, device=self.device))
        return [str(d) for d in digits], heatmap_lists(matrices)

    @torch.no_grad()
    def predict(self, model, text: str) -> dict:
        digits = pad_digits(parse_digits(text, self.config.length), self.config.length)
        model.eval()
        output = model(torch.tensor([digits], dtype=torch.long, device=self.device))[0]
        model.train()
        target = digits[0] + digits[1]
        if self.regression:
            value = output.item()
            return {"tokens": [str(d) for d in digits], "predicted": value,
                    "top": [[round(value, 3), 1.0]], "target": target}
        probabilities = torch.softmax(output, dim=-1)
        top = torch.topk(probabilities, 3)
        pairs = [[int(i), float(p)] for p, i in zip(top.values.tolist(), top.indices.tolist())]
        return {"tokens": [str(d) for d in digits], "predicted": pairs[0][0], "top": pairs, "target": target}

    def checkpoint_extra(self) -> dict:
        return {"vocabulary": self.vocabulary}


def make_task(config: TrainConfig, device: torch.device):
    if config.task == "lm":
        from .lm import LanguageModelTask

        return LanguageModelTask(config, device)
    return DigitTask(config, device)
