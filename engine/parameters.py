"""The textbook's parameter names and their initialisation.

NNDL names a cell's input weights ``W`` [input, hidden], its recurrent weights ``U`` [hidden, hidden]
and its bias ``b`` [hidden]; a gated cell has one of each per gate (``W_i`` ... ``b_c`` for the LSTM,
``W_r`` ... ``b_h`` for d2l's GRU). The scratch and naive cells and the torch-backed layer all report
these names, so the monitor, the checkpoints and the heatmaps read the same whichever one trains.
"""

from __future__ import annotations

import math

import torch

# The gates of each cell, in the textbook's order (the LSTM's c is the candidate c~).
GATES = {"srn": ("",), "lstm": ("i", "f", "o", "c"), "gru": ("r", "z", "h")}


def gate_names(cell: str, suffix: str = "") -> list[str]:
    """Textbook parameter names of one cell, W first, then U, then b."""
    return [textbook_name(matrix, gate, suffix) for matrix in ("W", "U", "b") for gate in GATES[cell]]


def textbook_name(matrix: str, gate: str, suffix: str = "") -> str:
    """``W_i`` for the LSTM's input gate, plain ``W`` for the SRN's single one."""
    return (f"{matrix}_{gate}" if gate else matrix) + suffix


def layer_suffix(layer: int, reverse: bool) -> str:
    """Names of the second layer end in ``.l1``, of the backward direction in ``.rev``."""
    return (f".l{layer}" if layer else "") + (".rev" if reverse else "")


def uniform(shape, bound: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """U(-bound, bound) drawn in the textbook shape's own order, so that a transposed view of
    PyTorch's packed weights receives the same numbers as a scratch parameter."""
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def initialise(tensors: dict[str, torch.Tensor], scheme: str, hidden: int,
               generator: torch.Generator | None = None) -> None:
    """Fill textbook-shaped tensors (views allowed) in place, in name order, so that the same
    generator gives the same weights whichever implementation holds them. ``zeros`` is the
    explosion chapter's."""
    with torch.no_grad():
        for key, tensor in tensors.items():
            if scheme == "zeros":
                tensor.zero_()
            elif scheme == "xavier":
                if key.startswith("b"):
                    tensor.zero_()
                else:
                    fan_in, fan_out = tensor.shape
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    tensor.copy_(uniform(tensor.shape, bound, generator))
            elif scheme == "torch":
                bound = 1.0 / math.sqrt(hidden)
                tensor.copy_(uniform(tensor.shape, bound, generator))
            else:
                raise ValueError(f"unknown initialisation {scheme!r}")
