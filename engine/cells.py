"""Recurrent cells: the textbook's equations as they read, and the same cells backed by torch.

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

W is [input, hidden], U is [hidden, hidden], b is [hidden].

Three implementations of one function, from the page to the library (``rnnlab-tui bench`` times them):

* ``--impl naive`` (``naive.py``): the textbook's code as printed, one product per gate per step.
* ``--impl scratch`` (here): the same equations with the gates' matrices side by side, so the input
  projections x_t W + b of all time steps come from one product and each step makes one recurrent
  product h_{t-1} U for all its gates, then splits it into the named gates. Autograd derives BPTT.
* ``--impl torch``: ``torch.nn.RNN/LSTM/GRU``, PyTorch's fused kernels. They hold packed
  ``weight_ih_l0`` [gates*hidden, input] etc. and report the textbook names as slices of them;
  PyTorch's second bias ``bias_hh_l0`` is held at zero and frozen, so SRN and LSTM compute exactly the
  function above. PyTorch's GRU applies the reset gate after the recurrent product,
  ``r_t * (h_{t-1} U_h)``: a different function, which ``--impl torch`` trains and the scratch GRU
  reproduces with ``reset_after=True`` (its ``bias_hh`` is held at zero too, so the GRU also has one
  bias per gate).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from .naive import NaiveCell
from .parameters import GATES, initialise, layer_suffix, textbook_name

# PyTorch packs LSTM gates as i, f, g(=c), o and GRU gates as r, z, n(=h).
TORCH_GATES = {"srn": ("",), "lstm": ("i", "f", "c", "o"), "gru": ("r", "z", "h")}


# --- the equations -------------------------------------------------------------
#
# Each step takes x_proj = x_t W + b of all its gates [batch, gates*hidden], already computed, and
# the previous state; it returns the new state and the step's gates by name, [batch, hidden] each.


def srn_step(x_proj, h, U):
    """h_t = tanh(x_t W + h_{t-1} U + b)."""
    h = torch.tanh(torch.addmm(x_proj, h, U))
    return h, {"hidden": h}


def lstm_step(x_proj, state, U):
    """NNDL 6.3: U = [U_i U_f U_o U_c] [hidden, 4*hidden], one product for the four gates."""
    h, c = state
    hidden = h.shape[-1]
    ifo, c_hat = torch.addmm(x_proj, h, U).split([3 * hidden, hidden], dim=1)
    i, f, o = torch.sigmoid(ifo).chunk(3, dim=1)
    c_tilde = torch.tanh(c_hat)
    c = f * c + i * c_tilde
    h = o * torch.tanh(c)
    return (h, c), {"input_gate": i, "forget_gate": f, "output_gate": o, "cell_state": c, "hidden": h}


def gru_step(x_proj, h, U_rz, U_h):
    """d2l 9.1: the candidate reads r_t * h_{t-1}, so U_h waits for the reset gate: two products."""
    hidden = h.shape[-1]
    x_rz, x_h = x_proj.split([2 * hidden, hidden], dim=1)
    r, z = torch.sigmoid(torch.addmm(x_rz, h, U_rz)).chunk(2, dim=1)
    h_tilde = torch.tanh(torch.addmm(x_h, r * h, U_h))
    h = z * h + (1 - z) * h_tilde
    return h, {"reset_gate": r, "update_gate": z, "candidate": h_tilde, "hidden": h}


def gru_reset_after_step(x_proj, h, U):
    """PyTorch's GRU: h~_t = tanh(x_t W_h + b_h + r_t * (h_{t-1} U_h)), one product for all gates."""
    hidden = h.shape[-1]
    x_rz, x_h = x_proj.split([2 * hidden, hidden], dim=1)
    h_rz, h_h = (h @ U).split([2 * hidden, hidden], dim=1)
    r, z = torch.sigmoid(x_rz + h_rz).chunk(2, dim=1)
    h_tilde = torch.tanh(x_h + r * h_h)
    h = z * h + (1 - z) * h_tilde
    return h, {"reset_gate": r, "update_gate": z, "candidate": h_tilde, "hidden": h}


def side_by_side(params: dict[str, torch.Tensor], cell: str, suffix: str = ""):
    """W [input, G], U [hidden, G], b [G]: one cell's matrices with its gates side by side in the
    textbook's order, G = gates*hidden."""
    def joined(matrix):
        parts = [params[textbook_name(matrix, gate, suffix)] for gate in GATES[cell]]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    return joined("W"), joined("U"), joined("b")


def unroll(cell: str, W, U, b, x: torch.Tensor, state=None, reset_after: bool = False):
    """The equations over x [batch, time, input] from ``state`` (zeros when None), W, U, b as
    ``side_by_side`` gives them.

    Returns (steps, final state): ``steps[t]`` maps the names of step t's gates and states to
    [batch, hidden] tensors of the autograd graph, so ``steps[t]["hidden"].retain_grad()`` before
    the backward pass gives dL/dh_t, the gradient that reaches step t through the recurrence; and
    ``"x_proj"`` to the step's input projection x_t W + b [batch, G], with which the step can be run
    again (``step_function``).
    """
    batch, steps, _ = x.shape
    hidden = U.shape[0]
    # The input projections of all time steps in one product: [batch, time, G]
    x_proj = torch.addmm(b, x.reshape(batch * steps, -1), W).view(batch, steps, -1)
    if state is None:
        zeros = x.new_zeros(batch, hidden)
        state = (zeros, zeros) if cell == "lstm" else zeros
    step = step_function(cell, U, reset_after)
    recorded = []
    for x_t in x_proj.unbind(1):
        state, gates = step(x_t, state)
        gates["x_proj"] = x_t
        recorded.append(gates)
    return recorded, state


def step_function(cell: str, U, reset_after: bool = False):
    """The cell's step with its U bound: ``step(x_proj, state)`` -> (new state, the step's gates)."""
    if cell == "srn":
        return partial(srn_step, U=U)
    if cell == "lstm":
        return partial(lstm_step, U=U)
    if reset_after:
        return partial(gru_reset_after_step, U=U)
    hidden = U.shape[0]
    return partial(gru_step, U_rz=U[:, : 2 * hidden], U_h=U[:, 2 * hidden:])


class ScratchCell(nn.Module):
    """One layer, one direction, written from the equations.

    It holds each matrix with its gates side by side, as ``unroll`` reads them: ``W`` = [W_i W_f W_o W_c]
    [input, gates*hidden], ``U`` [hidden, gates*hidden], ``b`` [gates*hidden]; the textbook's tensors
    (``W_i`` [input, hidden] ...) and their gradients are views of them.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, suffix: str = "", init: str = "xavier",
                 reset_after: bool = False):
        super().__init__()
        self.cell, self.hidden, self.suffix, self.reset_after = cell, hidden, suffix, reset_after
        size = len(GATES[cell]) * hidden
        self.W = nn.Parameter(torch.empty(input_size, size))
        self.U = nn.Parameter(torch.empty(hidden, size))
        self.b = nn.Parameter(torch.empty(size))
        initialise(self.textbook_parameters(), init, hidden)

    def _views(self, W, U, b) -> dict[str, torch.Tensor | None]:
        """Each gate's block of columns, under its textbook name, in ``gate_names`` order."""
        views = {}
        for matrix, tensor in (("W", W), ("U", U), ("b", b)):
            for k, gate in enumerate(GATES[self.cell]):
                block = None if tensor is None else tensor[..., k * self.hidden:(k + 1) * self.hidden]
                views[textbook_name(matrix, gate, self.suffix)] = block
        return views

    def textbook_parameters(self) -> dict[str, torch.Tensor]:
        return self._views(self.W, self.U, self.b)

    def textbook_gradients(self) -> dict[str, torch.Tensor | None]:
        return self._views(self.W.grad, self.U.grad, self.b.grad)

    def forward(self, x: torch.Tensor, state=None):
        """x [batch, time, input] -> outputs h_1..h_T [batch, time, hidden], final state."""
        steps, final = unroll(self.cell, self.W, self.U, self.b, x, state, self.reset_after)
        return torch.stack([step["hidden"] for step in steps], dim=1), final


def _stacked(finals: list[torch.Tensor]) -> torch.Tensor:
    """[layers * directions, batch, hidden]; one cell's state needs no copy."""
    return finals[0].unsqueeze(0) if len(finals) == 1 else torch.stack(finals)


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
            for torch_name, parameter in self.net.named_parameters():
                if torch_name.startswith("bias_hh"):
                    # One bias per gate, as in the textbook: PyTorch's second bias stays zero.
                    parameter.requires_grad_(False)
                    parameter.data.zero_()
            initialise(self.textbook_parameters(), init, hidden)
        else:
            # naive: the textbook's unfused cells, kept for comparison (bench, sweep)
            cell_class = NaiveCell if impl == "naive" else ScratchCell
            cells = []
            for layer in range(layers):
                for direction in range(self.directions):
                    size = input_size if layer == 0 else hidden * self.directions
                    cells.append(cell_class(cell, size, hidden, layer_suffix(layer, direction == 1),
                                            init, reset_after))
            self.cells = nn.ModuleList(cells)
        self.names = list(self.textbook_parameters())
        self._recorded: list | None = None  # set while ``equations_recorded`` is in force

    # -- textbook views ------------------------------------------------------

    def _torch_views(self, attribute: str) -> dict[str, torch.Tensor]:
        """attribute 'data' gives parameter views, 'grad' gradient views (None where no grad yet)."""
        views: dict[str, torch.Tensor] = {}
        gates = TORCH_GATES[self.cell]
        hidden = self.hidden
        order = GATES[self.cell]
        for layer in range(self.layers):
            for direction in range(self.directions):
                tail = f"_l{layer}" + ("_reverse" if direction else "")
                suffix = layer_suffix(layer, direction == 1)
                for matrix, torch_name in (("W", "weight_ih"), ("U", "weight_hh"), ("b", "bias_ih")):
                    tensor = getattr(getattr(self.net, torch_name + tail), attribute)
                    for gate in order:
                        key = textbook_name(matrix, gate, suffix)
                        if tensor is None:
                            views[key] = None
                            continue
                        index = gates.index(gate)
                        part = tensor[index * hidden:(index + 1) * hidden]
                        views[key] = part.t() if matrix != "b" else part
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
            for key, target in self.textbook_parameters().items():
                target.copy_(values[key])

    # -- forward -------------------------------------------------------------

    def initial_state(self, batch: int, like: torch.Tensor):
        count = self.layers * self.directions
        zeros = like.new_zeros(count, batch, self.hidden)
        return (zeros, zeros.clone()) if self.cell == "lstm" else zeros

    def forward(self, x: torch.Tensor, state=None):
        """x [batch, time, input]; state as initial_state() (layers*dirs, batch, hidden) or None."""
        if self._recorded is not None:
            return self._layered_forward(x, state, self._equations_cell)
        if self.impl == "torch":
            return self.net(x, state)
        return self._layered_forward(x, state, self._scratch_cell)

    @contextmanager
    def equations_recorded(self):
        """Within it, forward runs the textbook equations with the current weights, whichever
        implementation holds them, and the list it yields receives the first layer's steps (forward
        direction) as ``unroll`` gives them: step t's gates and states in the autograd graph."""
        self._recorded = []
        try:
            yield self._recorded
        finally:
            self._recorded = None

    def _scratch_cell(self, index: int, sequence: torch.Tensor, cell_state):
        return self.cells[index](sequence, cell_state)

    def _equations_cell(self, index: int, sequence: torch.Tensor, cell_state):
        layer, direction = divmod(index, self.directions)
        W, U, b = side_by_side(self.textbook_parameters(), self.cell, layer_suffix(layer, direction == 1))
        if index == 0 and torch.is_grad_enabled() and not sequence.requires_grad:
            # one-hot input to weights that are views of torch's packed ones: nothing in the graph
            # would need a gradient, and dL/dh_t is asked of it
            sequence = sequence.detach().requires_grad_()
        steps, final = unroll(self.cell, W, U, b, sequence, cell_state, self.reset_after)
        if index == 0:
            self._recorded.extend(steps)
        return torch.stack([step["hidden"] for step in steps], dim=1), final

    def _layered_forward(self, x, state, run_cell):
        """The layers and directions in turn; ``run_cell(index, sequence, cell_state)`` runs one."""
        finals_h, finals_c = [], []
        layer_input = x
        for layer in range(self.layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                if state is None:  # each cell starts from zeros of its own
                    cell_state = None
                else:
                    cell_state = (state[0][index], state[1][index]) if self.cell == "lstm" else state[index]
                sequence = layer_input.flip(1) if direction else layer_input
                output, final = run_cell(index, sequence, cell_state)
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
        """Run the first layer's equations on x [1, time, input] with the current weights, whichever
        implementation holds them.

        Returns gate name -> [hidden, time]: the heatmaps' rows are hidden units, columns time steps.
        """
        W, U, b = side_by_side(self.textbook_parameters(), self.cell)
        steps, _ = unroll(self.cell, W, U, b, x, reset_after=self.reset_after)
        return {key: torch.cat([step[key] for step in steps]).t() for key in steps[0] if key != "x_proj"}
