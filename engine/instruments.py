"""Instruments that look inside the recurrence, where a loss curve cannot.

flow        ‖∂L/∂h_t‖ for every time step t: how much of the loss's gradient reaches each position
            through the recurrence (NNDL 6.2, d2l 8.7), measured on a training batch.
gauge       σ_max of every recurrent matrix U against Pascanu's bound 1/γ (γ = 1 for tanh, 1/4 for
            sigmoid): σ_max < 1/γ is sufficient for the long-term components to vanish, σ_max > 1/γ
            necessary for them to explode (Pascanu, Mikolov & Bengio 2013, §2.1); and σ_max of the
            step Jacobian ∂h_T/∂h_{T-1} on the batch, whose products carry the gradient back in time.
saturation  per gate, the share of activations below 0.1 and above 0.9 on the dev set (Karpathy,
            Johnson & Fei-Fei 2015), and the share of hidden activations with |h| > 0.99.

Each runs the textbook equations (``Recurrent.equations_recorded``) with the model's current weights,
whichever implementation trains, so the numbers mean the same for ``--impl torch``, ``scratch`` and
``naive``. A measured step costs one more forward and backward of the equations.
"""

from __future__ import annotations

import math

import torch

from .cells import side_by_side, step_function

# Pascanu's γ bounds the derivative of the nonlinearity: 1 for tanh, 1/4 for the sigmoid.
GAMMA = {"tanh": 1.0, "sigmoid": 0.25}
SIGMOID_GATES = ("i", "f", "o", "r", "z")  # the LSTM's and GRU's gates; c~ and h~ are tanh
SATURATING = {"srn": (), "lstm": ("input_gate", "forget_gate", "output_gate"), "gru": ("reset_gate", "update_gate")}
# At full speed the flow is measured at least once in this long of training (10 times a second): a
# measured step costs about two plain ones, so measuring every step would halve the speed.
FLOW_INTERVAL_S = 0.1
JACOBIAN_EXAMPLES = 8  # examples whose step Jacobian's σ_max is averaged: one eigenvalue problem each, the costly part


def flow_due(speed: float, now: float, last_measured: float, step_seconds: float) -> bool:
    """The rate rule: every step under a speed cap (a student watches each one); at full speed the
    last step that starts within FLOW_INTERVAL_S of the last measured one (``step_seconds``, the
    measured time of a step, says which that is)."""
    return speed > 0 or now - last_measured + step_seconds >= FLOW_INTERVAL_S


def warm_up() -> None:
    """Ask autograd for batched gradients once. Their first call loads vmap's machinery (about half a
    second): done before the first step, it is start-up, not a first step so slow that the steps/s
    shown at an early pause reads a fraction of the run's speed."""
    x = torch.zeros(1, 1, requires_grad=True)
    torch.autograd.grad(x * 1.0, x, grad_outputs=torch.ones(1, 1, 1), is_grads_batched=True)


def inverse_gamma(name: str) -> float:
    """1/γ of the nonlinearity that recurrent matrix ``name`` (``U``, ``U_f``, ``U_h.l1``) feeds."""
    gate = name.split(".")[0].partition("_")[2]
    return 1.0 / GAMMA["sigmoid" if gate in SIGMOID_GATES else "tanh"]


def measure_flow(model, task, batch) -> dict:
    """The Flow event's fields for one training batch, with the model's current weights.

    ‖∂L/∂h_t‖ is the norm over the batch and the hidden units of the gradient of the step's loss with
    respect to the first layer's h_t (forward direction), through every path after it. The gradients
    are asked of autograd for the h_t alone, so the parameters' .grad, which training uses, stay
    untouched. The step Jacobian is ∂h_T/∂h_{T-1} of each example at the last step (for the LSTM with
    c_{T-1} held, so the cell state's own path, diag(f_T), is not in it); its σ_max is averaged over
    the batch's first JACOBIAN_EXAMPLES examples.
    """
    with model.rnn.equations_recorded() as steps:
        loss = task.measured_loss(model, batch)
    hidden = [step["hidden"] for step in steps]  # T x [batch, hidden]
    parameters = model.rnn.textbook_parameters()
    jacobian = _step_jacobian_sigma_max(model.rnn, parameters, steps) if len(steps) > 1 else torch.tensor(math.nan)
    grads = torch.autograd.grad(loss, hidden, allow_unused=True)
    grad_h = torch.stack([torch.zeros_like(h) if g is None else g for g, h in zip(grads, hidden)])
    norms = torch.linalg.vector_norm(grad_h.double(), dim=(1, 2))  # [T]
    matrices = {name: tensor for name, tensor in parameters.items() if name.startswith("U")}  # every U, [hidden, hidden]
    sigma = largest_singular_values(torch.stack(list(matrices.values())).detach())
    values = torch.cat([norms, sigma, jacobian.reshape(1).double()]).tolist()  # one transfer
    steps_count = len(hidden)
    grad_h_norms, sigma_max = values[:steps_count], values[steps_count:-1]
    first, last = grad_h_norms[0], grad_h_norms[-1]
    return {"grad_h_norms": grad_h_norms, "ratio": first / last if last > 0 else math.nan,
            "sigma_max": dict(zip(matrices, sigma_max)),
            "inverse_gamma": {name: inverse_gamma(name) for name in matrices},
            "jacobian_sigma_max": values[-1]}


def largest_singular_values(matrices: torch.Tensor) -> torch.Tensor:
    """The largest singular value of each matrix [..., m, n], in float64: the root of the largest
    eigenvalue of AᵀA, the same number as ``matrix_norm(A, ord=2)`` at about two thirds of its cost
    (that computes every singular value)."""
    a = matrices.double()
    return torch.linalg.eigvalsh(a.mT @ a)[..., -1].clamp(min=0.0).sqrt()


def _step_jacobian_sigma_max(rnn, parameters: dict[str, torch.Tensor], steps: list[dict]) -> torch.Tensor:
    """Mean of σ_max(∂h_T/∂h_{T-1}) over the batch's first examples, a 0-d tensor.

    The last step is run again on those examples alone, from the recorded h_{T-1} (and c_{T-1}, held)
    and input projection: examples do not mix, and each of the batch's other rows would cost as much
    again in the backward passes, one per hidden unit."""
    before, last = steps[-2], steps[-1]
    h_before = before["hidden"][:JACOBIAN_EXAMPLES].detach().requires_grad_()
    state = (h_before, before["cell_state"][:JACOBIAN_EXAMPLES].detach()) if rnn.cell == "lstm" else h_before
    _, U, _ = side_by_side(parameters, rnn.cell)
    step = step_function(rnn.cell, U.detach(), rnn.reset_after)
    _, gates = step(last["x_proj"][:JACOBIAN_EXAMPLES].detach(), state)
    examples, units = h_before.shape
    # one backward per output unit i, batched: row i of every example's Jacobian at once
    basis = torch.eye(units, dtype=h_before.dtype, device=h_before.device).unsqueeze(1).expand(units, examples, units)
    rows, = torch.autograd.grad(gates["hidden"], h_before, grad_outputs=basis, is_grads_batched=True)
    jacobians = rows.transpose(0, 1)  # [examples, i, j] = ∂h_T[i]/∂h_{T-1}[j]
    return largest_singular_values(jacobians).mean()


@torch.no_grad()
def measure_saturation(model, tokens: torch.Tensor) -> dict:
    """The Saturation event's fields for inputs ``tokens`` [examples, time] (the dev set)."""
    with model.rnn.equations_recorded() as steps:
        model(tokens)
    cell = model.rnn.cell
    gates = SATURATING[cell]
    shares = []
    for name in gates:
        activations = torch.stack([step[name] for step in steps])  # [time, examples, hidden]
        shares += [(activations < 0.1).double().mean(), (activations > 0.9).double().mean()]
    hidden = torch.stack([step["hidden"] for step in steps])
    shares.append((hidden.abs() > 0.99).double().mean())
    values = torch.stack(shares).tolist()  # one transfer
    return {"cell": cell, "low": {name: values[2 * k] for k, name in enumerate(gates)},
            "high": {name: values[2 * k + 1] for k, name in enumerate(gates)}, "hidden_saturated": values[-1]}
