"""The character language model's data (d2l 8.2-8.3): a text, its character vocabulary, and the two
ways of cutting it into minibatches of subsequences.

    sequential  d2l's seq_data_iter_sequential: the corpus is laid out as ``batch`` parallel rows and
                each minibatch continues the previous one, row for row, so the hidden state can be
                carried from batch to batch (and detached, so gradients stop at the batch boundary).
    random      d2l's seq_data_iter_random: non-overlapping subsequences in random order, so
                neighbouring rows of a batch are unrelated and every batch starts from a fresh state.

Both start the epoch at a random offset, then partition: every character lands in at most one
subsequence per epoch, and over epochs the offsets move the cuts so that every position is seen.
"""

from __future__ import annotations

import os
import random
from collections import Counter

import torch

from .data import DataError

UNKNOWN = "<unk>"  # the token for a character the vocabulary does not hold
GUTENBERG_START = "*** START OF"
GUTENBERG_END = "*** END OF"
VALIDATION_FRACTION = 0.1  # the last 10% of the text (cut at a line end) is held out: half dev, half test


# --- reading --------------------------------------------------------------


def decode(raw: bytes, name: str = "corpus") -> str:
    """UTF-8 bytes -> text with ``\\n`` line ends; a BOM is dropped, CRLF and CR become LF.

    Undecodable input raises DataError naming the byte offset, so a user can find the bad byte.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{name}: not UTF-8 text: undecodable byte 0x{raw[error.start]:02x} "
                        f"at byte offset {error.start}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def gutenberg_body(text: str) -> str:
    """The book between Project Gutenberg's ``*** START OF`` and ``*** END OF`` lines, without the
    licence, header, trademark lines and surrounding blank lines. Text without the markers is kept whole."""
    start, end = text.find(GUTENBERG_START), text.find(GUTENBERG_END)
    if start < 0 or end < start:
        return text
    lines = text[text.index("\n", start) + 1:end].split("\n")
    # The closing line ("End of Project Gutenberg's ...") names the trademark: it goes too.
    lines = [line for line in lines if not line.startswith("End of Project Gutenberg")]
    return "\n".join(lines).strip("\n") + "\n"


def corpus_path(data_root: str, name: str) -> str:
    return os.path.join(data_root, "corpus", f"{name}.txt")


def read_corpus(path: str) -> str:
    """A corpus file as text (BOM and CRLF handled, a Gutenberg wrapper removed)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such corpus file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None
    text = gutenberg_body(decode(raw, path))
    if len(text) < 3:
        raise DataError(f"{path}: the corpus is empty")
    return text


def split_text(text: str, fraction: float = VALIDATION_FRACTION) -> tuple[str, str, str]:
    """(train, dev, test): the last ``fraction`` of the text is held out, its first half for dev and
    its second for test, each cut at the line end before its mark."""
    def cut(mark: int, start: int) -> int:
        return text.rfind("\n", start, mark) + 1 or mark  # no line end before the mark: cut mid-line

    dev = cut(int(len(text) * (1 - fraction)), 0)
    test = cut(dev + (len(text) - dev) // 2, dev)
    return text[:dev], text[dev:test], text[test:]


# --- the vocabulary -------------------------------------------------------


class Vocabulary:
    """d2l's Vocab over characters: index 0 is ``<unk>``, then characters by falling frequency
    (ties in order of first appearance, as a Counter sorted stably gives them)."""

    unk = 0  # index of UNKNOWN

    def __init__(self, text: str = "", tokens: list[str] | None = None):
        if tokens is None:
            counts = sorted(Counter(text).items(), key=lambda item: item[1], reverse=True)
            tokens = [UNKNOWN] + [char for char, _ in counts]
        if not tokens or tokens[0] != UNKNOWN:
            raise ValueError(f"a vocabulary starts with {UNKNOWN}")
        self.idx_to_token = list(tokens)
        self.token_to_idx = {token: index for index, token in enumerate(self.idx_to_token)}

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __contains__(self, char: str) -> bool:
        return char in self.token_to_idx and char != UNKNOWN

    def encode(self, text: str) -> list[int]:
        return [self.token_to_idx.get(char, self.unk) for char in text]

    def decode(self, indices) -> str:
        return "".join(self.idx_to_token[int(index)] for index in indices)

    def unknown_in(self, text: str) -> list[str]:
        """The characters of ``text`` outside the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(char for char in text if char not in self))


# --- minibatches ----------------------------------------------------------


def num_batches(corpus_length: int, batch_size: int, num_steps: int, sampling: str) -> int:
    """Batches per epoch at the least favourable offset, so every epoch has the same number of steps."""
    if sampling == "random":
        usable = corpus_length - (num_steps - 1)  # the largest offset randint(0, num_steps - 1) can draw
        return ((usable - 1) // num_steps) // batch_size
    usable = corpus_length - num_steps  # the largest offset randint(0, num_steps) can draw
    return ((usable - 1) // batch_size) // num_steps


def seq_data_iter_random(corpus: torch.Tensor, batch_size: int, num_steps: int, rng: random.Random,
                         limit: int | None = None):
    """d2l's random sampling: X, Y [batch, num_steps]; Y is X shifted one character on.

    ``limit`` stops after that many batches (the runner wants the same count every epoch).
    """
    # Start at a random offset so the subsequences are cut differently each epoch.
    corpus = corpus[rng.randint(0, num_steps - 1):]
    num_subseqs = (len(corpus) - 1) // num_steps  # -1: the label of the last character
    initial_indices = list(range(0, num_subseqs * num_steps, num_steps))
    rng.shuffle(initial_indices)  # neighbouring subsequences need not be neighbours in a batch
    batches = num_subseqs // batch_size
    if limit is not None:
        batches = min(batches, limit)
    for i in range(0, batch_size * batches, batch_size):
        starts = torch.tensor(initial_indices[i:i + batch_size], device=corpus.device)  # [batch]
        positions = starts[:, None] + torch.arange(num_steps, device=corpus.device)  # [batch, num_steps]
        yield corpus[positions], corpus[positions + 1]


def seq_data_iter_sequential(corpus: torch.Tensor, batch_size: int, num_steps: int, rng: random.Random,
                             limit: int | None = None):
    """d2l's sequential partitioning: row r of batch i+1 continues row r of batch i."""
    offset = rng.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = corpus[offset:offset + num_tokens].reshape(batch_size, -1)  # [batch, num_tokens/batch]
    Ys = corpus[offset + 1:offset + 1 + num_tokens].reshape(batch_size, -1)
    batches = Xs.shape[1] // num_steps
    if limit is not None:
        batches = min(batches, limit)
    for i in range(0, num_steps * batches, num_steps):
        yield Xs[:, i:i + num_steps], Ys[:, i:i + num_steps]


SAMPLERS = {"sequential": seq_data_iter_sequential, "random": seq_data_iter_random}
