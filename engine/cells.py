"""Recurrent cells with the textbook's parameter names, written from the equations or backed by torch.

Every cell, whichever implementation, exposes the same parameter names (NNDL's ``W`` for the input
weights, ``U`` for the recurrent weights, ``b`` for the bias; one of each per gate):

    SRN   h_t = tanh(x_t W + h_{t-1} U + b)
    LSTM  i_t = sigmoid(x_t W_i + h_{t-1} U_i + b_i)      input gate
          f_t = sigmoid(x_t W_f + h_{t-1} U_f + b_f)      forget gate
          o_t = sigmoid(x_t W_o + h_{t-1} U_o + b_o)      output gate
          c~_t = tanh(x_t W_c + h_{t-1} U_c + b_c)        candidate
          c_t = f_t * c_{t-1} + i_t * c~_t,  h_t = o_t * tanh(c_t)
    GRU   r_t = sigmoid(x_t W_r + h_{t-1} U_r + b_r)      reset gate (d2l 9.1)
          z_t = sigmoid(x_t W_z + h_{t-1} U_z + b_z)      update gate
          h~_t = tanh(x_t W_h + (r_t * h_{t-1}) U_h + b_h)
          h_t = z_t * h_{t-1} + (1 - z_t) * h~_t

W is [input, hidden], U is [hidden, hidden], b is [hidden]. The torch-backed cells hold PyTorch's packed
``weight_ih_l0`` [gates*hidden, input] etc. and report the same names as slices of them; PyTorch's second
bias ``bias_hh_l0`` is held at zero and frozen, so SRN and LSTM compute exactly the function above.
PyTorch's GRU applies the reset gate after the recurrent product, ``r_t * (h_{t-1} U_h)``: a different
function, which ``--impl torch`` trains and the scratch GRU reproduces with ``reset_after=True``
(its ``bias_hh`` is held at zero too, so the GRU also has one bias per gate).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .bptt import PACKED, Sequence

# Gate order inside each cell's packed [.., gates*hidden] weights, in textbook names.
SCRATCH_GATES = {"srn": ("",), "lstm": ("i", "f", "o", "c"), "gru": ("r", "z", "h")}
# PyTorch packs LSTM gates as i, f, g(=c), o and GRU gates as r, z, n(=h).
TORCH_GATES = {"srn": ("",), "lstm": ("i", "f", "c", "o"), "gru": ("r", "z", "h")}


def gate_names(cell: str, suffix: str = "") -> list[str]:
    """Textbook parameter names of one cell, W first, then U, then b."""
    gates = SCRATCH_GATES[cell]
    names = []
    for matrix in ("W", "U", "b"):
        for gate in gates:
            names.append((f"{matrix}_{gate}" if gate else matrix) + suffix)
    return names


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
        for name, tensor in tensors.items():
            if scheme == "zeros":
                tensor.zero_()
            elif scheme == "xavier":
                if name.startswith("b"):
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


# --- the equations, one step -------------------------------------------------


def equations_step(cell: str, x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
                   U: torch.Tensor, U_h: torch.Tensor | None = None, reset_after: bool = False):
    """One time step from the input projection ``x_proj = x_t W + b`` [batch, gates*hidden].

    Returns (h, c, gates) where gates maps gate names to [batch, hidden] tensors.
    For the GRU, U holds U_r and U_z packed [hidden, 2*hidden] and U_h is separate, because the
    candidate needs the reset gate first.
    """
    hidden = h.shape[-1]
    if cell == "srn":
        h = torch.tanh(torch.addmm(x_proj, h, U))
        return h, None, {"hidden": h}
    if cell == "lstm":
        pre = torch.addmm(x_proj, h, U)  # [batch, 4*hidden]
        sig = torch.sigmoid(pre[:, : 3 * hidden])
        input_gate, forget_gate, output_gate = sig.chunk(3, dim=1)
        candidate = torch.tanh(pre[:, 3 * hidden:])
        c = forget_gate * c + input_gate * candidate
        h = output_gate * torch.tanh(c)
        return h, c, {"input_gate": input_gate, "forget_gate": forget_gate,
                      "output_gate": output_gate, "cell_state": c, "hidden": h}
    # GRU
    rz = torch.sigmoid(torch.addmm(x_proj[:, : 2 * hidden], h, U))
    reset_gate, update_gate = rz.chunk(2, dim=1)
    if reset_after:  # PyTorch's GRU: r * (h U_h)
        candidate = torch.tanh(x_proj[:, 2 * hidden:] + reset_gate * (h @ U_h))
    else:  # d2l's GRU: (r * h) U_h
        candidate = torch.tanh(torch.addmm(x_proj[:, 2 * hidden:], reset_gate * h, U_h))
    h = update_gate * h + (1 - update_gate) * candidate
    return h, None, {"reset_gate": reset_gate, "update_gate": update_gate,
                     "candidate": candidate, "hidden": h}


# --- written from the equations ----------------------------------------------


class ScratchCell(nn.Module):
    """One layer, one direction, written from the equations.

    The weights live packed, one block of rows per gate, as a fast implementation keeps them:
    ``weight_input`` [gates*hidden, input], ``weight_hidden`` [gates*hidden, hidden], ``bias``
    [gates*hidden]; every textbook tensor (``W_i`` [input, hidden], ``U_i``, ``b_i`` ...) is a view
    into them, and so is its gradient. The training forward is ``bptt.Sequence`` (one autograd node,
    hand-written BPTT); ``record=True`` runs ``equations_step`` step by step and keeps every gate.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, suffix: str = "", init: str = "xavier",
                 reset_after: bool = False):
        super().__init__()
        self.cell, self.hidden, self.suffix, self.reset_after = cell, hidden, suffix, reset_after
        self.gates = SCRATCH_GATES[cell]
        self.names = gate_names(cell, suffix)
        size = len(self.gates) * hidden
        self.weight_input = nn.Parameter(torch.empty(size, input_size))
        self.weight_hidden = nn.Parameter(torch.empty(size, hidden))
        self.bias = nn.Parameter(torch.empty(size))
        initialise(self.textbook_parameters(), init, hidden)

    def _views(self, attribute: str) -> dict[str, torch.Tensor | None]:
        """'data' gives the textbook tensors as views of the packed ones, 'grad' their gradients."""
        views: dict[str, torch.Tensor | None] = {}
        slots = PACKED[self.cell]
        for matrix, packed in (("W", self.weight_input), ("U", self.weight_hidden), ("b", self.bias)):
            tensor = packed if attribute == "data" else packed.grad
            for gate_index, gate in enumerate(self.gates):
                name = (f"{matrix}_{gate}" if gate else matrix) + self.suffix
                if tensor is None:
                    views[name] = None
                    continue
                slot = slots.index(gate_index)
                part = tensor[slot * self.hidden:(slot + 1) * self.hidden]
                views[name] = part if matrix == "b" else part.t()
        return views

    def textbook_parameters(self) -> dict[str, torch.Tensor]:
        return self._views("data")

    def textbook_gradients(self) -> dict[str, torch.Tensor | None]:
        return self._views("grad")

    def _packed(self, matrix: str) -> torch.Tensor:
        """W, U or b of all gates side by side in textbook order: [.., gates*hidden]."""
        params = self.textbook_parameters()
        parts = [params[(f"{matrix}_{gate}" if gate else matrix) + self.suffix] for gate in self.gates]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, state=None, record: bool = False):
        """x [batch, time, input] -> outputs [batch, time, hidden], final state (and per-step gates)."""
        # The LSTM's sequence runs its element-wise work in NumPy, so on another device it takes
        # the equations step by step, with autograd.
        if not record and (self.cell != "lstm" or x.device.type == "cpu"):
            h0, c0 = _split_state(self.cell, state, x.shape[0], self.hidden, x)
            output, h, c = Sequence.apply(self.cell, self.reset_after, x, h0, c0,
                                          self.weight_input, self.weight_hidden, self.bias)
            return output, ((h, c) if self.cell == "lstm" else h)
        batch, steps, _ = x.shape
        W, b = self._packed("W"), self._packed("b")  # [input, gates*hidden], [gates*hidden]
        # The input projections of all time steps in one matrix product.
        x_proj = torch.addmm(b, x.reshape(batch * steps, -1), W).view(batch, steps, -1)
        U_all = self._packed("U")  # [hidden, gates*hidden]
        U, U_h = U_all, None
        if self.cell == "gru":
            U, U_h = U_all[:, : 2 * self.hidden], U_all[:, 2 * self.hidden:]
        h, c = _split_state(self.cell, state, batch, self.hidden, x)
        outputs, recorded = [], []
        for t in range(steps):
            h, c, gates = equations_step(self.cell, x_proj[:, t], h, c, U, U_h, reset_after=self.reset_after)
            outputs.append(h)
            recorded.append(gates)
        final = (h, c) if self.cell == "lstm" else h
        output = torch.stack(outputs, dim=1)
        if not record:
            return output, final
        return output, final, {key: torch.stack([g[key] for g in recorded], dim=1) for key in recorded[0]}


def _attr(name: str) -> str:
    return name.replace(".", "_")


def _stacked(finals: list[torch.Tensor]) -> torch.Tensor:
    """[layers * directions, batch, hidden]; one cell's state needs no copy."""
    return finals[0].unsqueeze(0) if len(finals) == 1 else torch.stack(finals)


def _split_state(cell, state, batch, hidden, like):
    if state is None:
        zeros = like.new_zeros(batch, hidden)
        return zeros, (zeros if cell == "lstm" else None)
    if cell == "lstm":
        return state
    return state, None


# --- backed by torch.nn.RNN / LSTM / GRU ------------------------------------


TORCH_MODULES = {"srn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Recurrent(nn.Module):
    """A stack of 1-2 layers, optionally bidirectional, of one cell kind, scratch or torch-backed.

    forward(x [batch, time, input], state) -> outputs [batch, time, dirs*hidden], state.
    ``textbook_parameters()`` and ``textbook_gradients()`` give every tensor under its textbook name,
    whichever implementation holds it, so the monitor reads the same either way.
    """

    def __init__(self, cell: str, impl: str, input_size: int, hidden: int, layers: int = 1,
                 bidirectional: bool = False, init: str = "xavier", reset_after: bool = False):
        super().__init__()
        self.cell, self.impl, self.hidden = cell, impl, hidden
        self.layers, self.directions = layers, 2 if bidirectional else 1
        self.reset_after = reset_after or (impl == "torch" and cell == "gru")
        if impl == "torch":
            kwargs = {"nonlinearity": "tanh"} if cell == "srn" else {}
            self.net = TORCH_MODULES[cell](input_size, hidden, num_layers=layers, batch_first=True,
                                           bidirectional=bidirectional, **kwargs)
            for name, parameter in self.net.named_parameters():
                if name.startswith("bias_hh"):
                    # One bias per gate, as in the textbook: PyTorch's second bias stays zero.
                    parameter.requires_grad_(False)
                    parameter.data.zero_()
            initialise(self.textbook_parameters(), init, hidden)
        else:
            cell_class = ScratchCell
            if impl == "naive":  # the textbook's unfused cells, kept for comparison (bench, sweep)
                from .naive import NaiveCell as cell_class
            cells = []
            for layer in range(layers):
                for direction in range(self.directions):
                    size = input_size if layer == 0 else hidden * self.directions
                    cells.append(cell_class(cell, size, hidden, layer_suffix(layer, direction == 1),
                                            init, reset_after))
            self.cells = nn.ModuleList(cells)
        self.names = list(self.textbook_parameters())

    # -- textbook views ------------------------------------------------------

    def _torch_views(self, attribute: str) -> dict[str, torch.Tensor]:
        """attribute 'data' gives parameter views, 'grad' gradient views (None where no grad yet)."""
        views: dict[str, torch.Tensor] = {}
        gates = TORCH_GATES[self.cell]
        hidden = self.hidden
        order = SCRATCH_GATES[self.cell]
        for layer in range(self.layers):
            for direction in range(self.directions):
                tail = f"_l{layer}" + ("_reverse" if direction else "")
                suffix = layer_suffix(layer, direction == 1)
                for matrix, torch_name in (("W", "weight_ih"), ("U", "weight_hh"), ("b", "bias_ih")):
                    tensor = getattr(getattr(self.net, torch_name + tail), attribute)
                    for gate in order:
                        name = (f"{matrix}_{gate}" if gate else matrix) + suffix
                        if tensor is None:
                            views[name] = None
                            continue
                        index = gates.index(gate)
                        part = tensor[index * hidden:(index + 1) * hidden]
                        views[name] = part.t() if matrix != "b" else part
        return views

    def textbook_parameters(self) -> dict[str, torch.Tensor]:
        if self.impl == "torch":
            return self._torch_views("data")
        params: dict[str, torch.Tensor] = {}
        for cell in self.cells:
            params.update(cell.textbook_parameters())
        return params

    def textbook_gradients(self) -> dict[str, torch.Tensor | None]:
        if self.impl == "torch":
            return self._torch_views("grad")
        grads: dict[str, torch.Tensor | None] = {}
        for cell in self.cells:
            grads.update(cell.textbook_gradients())
        return grads

    def load_textbook_parameters(self, values: dict[str, torch.Tensor]) -> None:
        """Copy textbook-named tensors in (the same weights in either implementation)."""
        with torch.no_grad():
            for name, target in self.textbook_parameters().items():
                target.copy_(values[name])

    # -- forward -------------------------------------------------------------

    def initial_state(self, batch: int, like: torch.Tensor):
        count = self.layers * self.directions
        zeros = like.new_zeros(count, batch, self.hidden)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def forward(self, x: torch.Tensor, state=None):
        """x [batch, time, input]; state as initial_state() (layers*dirs, batch, hidden) or None."""
        if self.impl == "torch":
            return self.net(x, state)
        return self._scratch_forward(x, state)

    def _scratch_forward(self, x, state):
        finals_h, finals_c = [], []
        layer_input = x
        for layer in range(self.layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                cell = self.cells[index]
                if state is None:  # each cell starts from zeros of its own
                    cell_state = None
                else:
                    cell_state = (state[0][index], state[1][index]) if self.cell == "lstm" else state[index]
                sequence = layer_input.flip(1) if direction else layer_input
                output, final = cell(sequence, cell_state)
                outputs.append(output.flip(1) if direction else output)
                if self.cell == "lstm":
                    finals_h.append(final[0])
                    finals_c.append(final[1])
                else:
                    finals_h.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        h = _stacked(finals_h)
        return layer_input, ((h, _stacked(finals_c)) if self.cell == "lstm" else h)

    @torch.no_grad()
    def record(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the first layer's equations on x [1, time, input] with the current weights.

        Returns gate name -> [hidden, time]: the heatmaps' rows are hidden units, columns time steps.
        """
        params = self.textbook_parameters()
        gates = SCRATCH_GATES[self.cell]
        W = torch.cat([params[(f"W_{g}" if g else "W")] for g in gates], dim=-1)
        b = torch.cat([params[(f"b_{g}" if g else "b")] for g in gates], dim=-1)
        U_all = torch.cat([params[(f"U_{g}" if g else "U")] for g in gates], dim=-1)
        U, U_h = U_all, None
        if self.cell == "gru":
            U, U_h = U_all[:, : 2 * self.hidden], U_all[:, 2 * self.hidden:]
        x_proj = x[0] @ W + b  # [time, gates*hidden]
        h = x.new_zeros(1, self.hidden)
        c = x.new_zeros(1, self.hidden) if self.cell == "lstm" else None
        steps = []
        for t in range(x.shape[1]):
            h, c, values = equations_step(self.cell, x_proj[t:t + 1], h, c, U, U_h,
                                          reset_after=self.reset_after)
            steps.append(values)
        return {key: torch.cat([step[key] for step in steps]).t() for key in steps[0]}
