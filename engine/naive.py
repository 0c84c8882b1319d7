"""The textbook's own cells, kept as written, to measure what the fast paths gain.

NNDL 6.1/6.3 write the SRN and the LSTM as modules that loop over time steps and, at every step,
make a separate input product and a separate recurrent product for every gate
(``sigmoid(x_t @ W_i + h @ U_i + b_i)``, and again for f, o and c~), with one parameter per textbook
name; d2l 9.1 writes the GRU the same way. Nothing is packed, nothing is fused: this is the baseline
the textbook timed against ``torch.nn.LSTM``. ``--impl naive`` (bench and sweep) trains with these.

Each cell takes x [batch, time, input] and a state, and returns outputs [batch, time, hidden] and the
final state, like the scratch cells, so the same model and runner can train it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .parameters import gate_names, initialise


class NaiveCell(nn.Module):
    """One textbook cell: one nn.Parameter per textbook name (W_i [input, hidden], U_i, b_i, ...)."""

    def __init__(self, cell: str, input_size: int, hidden: int, suffix: str = "", init: str = "xavier",
                 reset_after: bool = False):
        super().__init__()
        self.cell, self.hidden, self.suffix, self.reset_after = cell, hidden, suffix, reset_after
        self.names = gate_names(cell, suffix)
        shapes = {"W": (input_size, hidden), "U": (hidden, hidden), "b": (hidden,)}
        # nn.Module attribute names cannot hold the suffix's dots
        self.textbook = nn.ParameterDict({key.replace(".", "_"): nn.Parameter(torch.empty(shapes[key[0]]))
                                          for key in self.names})
        initialise(self.textbook_parameters(), init, hidden)

    def textbook_parameters(self) -> dict[str, torch.Tensor]:
        return {key: self.textbook[key.replace(".", "_")] for key in self.names}

    def textbook_gradients(self) -> dict[str, torch.Tensor | None]:
        return {key: parameter.grad for key, parameter in self.textbook_parameters().items()}

    def _p(self, key: str) -> torch.Tensor:
        """``self.W_i`` in the textbook's code."""
        return self.textbook[(key + self.suffix).replace(".", "_")]

    def forward(self, inputs: torch.Tensor, states=None):
        batch_size, seq_len, _ = inputs.shape
        if states is None:
            zeros = inputs.new_zeros(batch_size, self.hidden)
            states = (zeros, zeros) if self.cell == "lstm" else zeros
        step_forward = {"srn": self._srn_step, "lstm": self._lstm_step, "gru": self._gru_step}[self.cell]
        outputs = []
        for step in range(seq_len):
            step_input = inputs[:, step, :]
            states = step_forward(step_input, states)
            outputs.append(states[0] if self.cell == "lstm" else states)
        return torch.stack(outputs, dim=1), states

    def _srn_step(self, step_input, hidden_state):
        # NNDL 6.1: h_t = tanh(x_t W + h_{t-1} U + b)
        p = self._p
        return F.tanh(torch.matmul(step_input, p("W")) + torch.matmul(hidden_state, p("U")) + p("b"))

    def _lstm_step(self, step_input, states):
        # NNDL 6.3.1, gate by gate
        p = self._p
        hidden_state, cell_state = states
        I_gate = F.sigmoid(torch.matmul(step_input, p("W_i")) + torch.matmul(hidden_state, p("U_i")) + p("b_i"))
        F_gate = F.sigmoid(torch.matmul(step_input, p("W_f")) + torch.matmul(hidden_state, p("U_f")) + p("b_f"))
        O_gate = F.sigmoid(torch.matmul(step_input, p("W_o")) + torch.matmul(hidden_state, p("U_o")) + p("b_o"))
        C_tilde = F.tanh(torch.matmul(step_input, p("W_c")) + torch.matmul(hidden_state, p("U_c")) + p("b_c"))
        cell_state = F_gate * cell_state + I_gate * C_tilde
        hidden_state = O_gate * F.tanh(cell_state)
        return hidden_state, cell_state

    def _gru_step(self, step_input, hidden_state):
        # d2l 9.1: reset and update gates, then the candidate from the reset state
        p = self._p
        R = F.sigmoid(torch.matmul(step_input, p("W_r")) + torch.matmul(hidden_state, p("U_r")) + p("b_r"))
        Z = F.sigmoid(torch.matmul(step_input, p("W_z")) + torch.matmul(hidden_state, p("U_z")) + p("b_z"))
        if self.reset_after:  # PyTorch's variant, for comparisons with --impl torch
            H_tilda = F.tanh(torch.matmul(step_input, p("W_h")) + R * torch.matmul(hidden_state, p("U_h"))
                             + p("b_h"))
        else:
            H_tilda = F.tanh(torch.matmul(step_input, p("W_h")) + torch.matmul(R * hidden_state, p("U_h"))
                             + p("b_h"))
        return Z * hidden_state + (1 - Z) * H_tilda
