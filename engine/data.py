"""The digit-sum data of NNDL 6.1: generation (byte-identical to the textbook's) and loading.

Each example is a digit sequence of length L whose label is the sum of its first two digits.
Only NumPy is needed here; the tensors are made by the runner.
"""

from __future__ import annotations

import os
import random

import numpy as np

from .config import DIGIT_LENGTHS

NUM_CLASSES = 19  # sums 0..18

# The Paddle notebook's regression variant trains on four examples only.
NUMERIC_EXAMPLES = (
    ([3, 2, 0, 0, 1], 5),
    ([7, 1, 0, 4, 0], 8),
    ([6, 7, 0, 0, 0], 13),
    ([9, 8, 0, 2, 0], 17),
)


class DataError(ValueError):
    """A data file that is missing or malformed; the message names the file (and the line)."""


def generate_examples(length: int, k: int) -> list[tuple[list[int], int]]:
    """NNDL's generate_data: every (n1, n2) base sequence copied k times, one random position set.

    Draws from the global NumPy stream, so the caller's seeding decides the result.
    """
    if length < 3:
        raise ValueError(f"length must be at least 3, not {length}")
    base_examples = []
    for n1 in range(10):
        for n2 in range(10):
            base_examples.append(([n1, n2] + [0] * (length - 2), n1 + n2))
    examples = []
    for sequence, label in base_examples:
        for _ in range(k):
            idx = np.random.randint(2, length)
            val = np.random.randint(0, 10)
            copy = sequence.copy()
            copy[idx] = val
            examples.append((copy, label))
    return examples


def format_examples(examples) -> str:
    return "".join(" ".join(str(d) for d in sequence) + "\t" + str(label) + "\n" for sequence, label in examples)


SPLITS = (("train", 3), ("dev", 1), ("test", 1))  # each split and how many copies of each base example


def digit_paths(root: str) -> list[str]:
    """The files ``generate_all`` writes, in its order: {root}/{L}/{train,dev,test}.txt."""
    return [os.path.join(root, str(length), f"{split}.txt") for length in DIGIT_LENGTHS for split, _ in SPLITS]


def generate_all(root: str) -> list[str]:
    """Write {root}/{L}/{train,dev,test}.txt exactly as the textbook does; return the paths."""
    np.random.seed(0)
    random.seed(0)
    written = []
    for length in DIGIT_LENGTHS:
        folder = os.path.join(root, str(length))
        os.makedirs(folder, exist_ok=True)
        for split, k in SPLITS:
            path = os.path.join(folder, f"{split}.txt")
            text = format_examples(generate_examples(length, k))
            temporary = path + ".tmp"
            try:
                with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
                    handle.write(text)
                os.replace(temporary, path)
            except OSError:  # a full disk: the old file stays, no half-written one beside it
                if os.path.exists(temporary):
                    os.remove(temporary)
                raise
            written.append(path)
    return written


def load_split(path: str, length: int | None = None) -> list[tuple[list[int], int]]:
    """Read one split file; a malformed line raises DataError naming the file and the line number."""
    if not os.path.isfile(path):
        digits = os.path.dirname(os.path.dirname(path)) or "."
        raise DataError(f"{path}: no such data file (`rnnlab-tui data --output {digits} --force` regenerates "
                        "it, and the textbook's other digit files there)")
    examples = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read: {error}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        where = f"{path}:{number}"
        if len(parts) != 2:
            raise DataError(f"{where}: expected 'digits<TAB>label', got {line[:40]!r}")
        tokens = parts[0].split()
        if not tokens or not all(token.isascii() and token.isdigit() and len(token) == 1 for token in tokens):
            raise DataError(f"{where}: the sequence must be digits 0-9 separated by spaces")
        if length is not None and len(tokens) != length:
            raise DataError(f"{where}: expected {length} digits, found {len(tokens)}")
        try:
            label = int(parts[1])
        except ValueError:
            raise DataError(f"{where}: the label {parts[1]!r} is not an integer") from None
        if not 0 <= label < NUM_CLASSES:
            raise DataError(f"{where}: the label {label} is outside 0..{NUM_CLASSES - 1}")
        examples.append(([int(token) for token in tokens], label))
    if not examples:
        raise DataError(f"{path}: the file holds no examples")
    return examples


def load_digits(root: str, length: int) -> dict[str, list[tuple[list[int], int]]]:
    folder = os.path.join(root, "digits", str(length))
    return {split: load_split(os.path.join(folder, f"{split}.txt"), length) for split in ("train", "dev", "test")}


def load_numeric(length: int = 5) -> dict[str, list[tuple[list[int], int]]]:
    examples = [(sequence[:length] + [0] * max(0, length - len(sequence)), label)
                for sequence, label in NUMERIC_EXAMPLES]
    return {"train": examples, "dev": examples, "test": examples}
