"""At the benchmark's sizes the three implementations compute one function: the scratch cells (the
equations with autograd) the torch cells' one, the textbook's naive cells the scratch cells' one:
outputs, final states and every gradient to 1e-5."""

import pytest
import torch

from engine.cells import Recurrent

SIZES = [(8, 20, 32), (64, 20, 32), (3, 7, 16)]  # the two benchmark sizes and an odd one


def _run(model, x, state, weights):
    """Outputs, final state, and the gradients of a loss that uses every output and the final state."""
    inputs = x.detach().clone().requires_grad_()
    if isinstance(state, tuple):
        state = tuple(s.detach().clone().requires_grad_() for s in state)
        leaves = list(state)
    else:
        state = state.detach().clone().requires_grad_()
        leaves = [state]
    model.zero_grad()
    outputs, final = model(inputs, state)
    finals = list(final) if isinstance(final, tuple) else [final]
    # a mean over the batch, as the training losses are: gradients of order 1, where float32 holds 1e-5
    loss = ((outputs * weights).sum() + sum((k + 1) * f.sum() for k, f in enumerate(finals))) / len(outputs)
    loss.backward()
    grads = {name: g.clone() for name, g in model.textbook_gradients().items()}
    return outputs.detach(), [f.detach() for f in finals], inputs.grad, [s.grad for s in leaves], grads


def _state(cell, batch, hidden, generator):
    h = torch.randn(1, batch, hidden, generator=generator)
    return (h, torch.randn(1, batch, hidden, generator=generator)) if cell == "lstm" else h


@pytest.mark.parametrize("batch,steps,hidden", SIZES)
@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
def test_scratch_equals_torch(cell, batch, steps, hidden):
    generator = torch.Generator().manual_seed(batch * 1000 + steps)
    library = Recurrent(cell, "torch", hidden, hidden, init="torch")
    scratch = Recurrent(cell, "scratch", hidden, hidden, reset_after=True)
    scratch.load_textbook_parameters(library.textbook_parameters())
    x = torch.randn(batch, steps, hidden, generator=generator)
    state = _state(cell, batch, hidden, generator)
    weights = torch.randn(batch, steps, hidden, generator=generator)
    expected, got = _run(library, x, state, weights), _run(scratch, x, state, weights)
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0], expected[0], **close)
    for a, b in zip(got[1] + [got[2]] + got[3], expected[1] + [expected[2]] + expected[3]):
        torch.testing.assert_close(a, b, **close)
    assert list(got[4]) == list(expected[4])
    for name in expected[4]:
        torch.testing.assert_close(got[4][name], expected[4][name], **close, msg=name)


@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
@pytest.mark.parametrize("reset_after", [False, True])
def test_naive_cells_equal_the_scratch_cells(cell, reset_after):
    generator = torch.Generator().manual_seed(7)
    scratch = Recurrent(cell, "scratch", 32, 32, init="torch", reset_after=reset_after)
    naive = Recurrent(cell, "naive", 32, 32, reset_after=reset_after)
    assert naive.names == scratch.names
    naive.load_textbook_parameters(scratch.textbook_parameters())
    x = torch.randn(8, 20, 32, generator=generator)
    state = _state(cell, 8, 32, generator)
    weights = torch.randn(8, 20, 32, generator=generator)
    a, b = _run(scratch, x, state, weights), _run(naive, x, state, weights)
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b[0], a[0], **close)
    torch.testing.assert_close(b[2], a[2], **close)
    for name in a[4]:
        torch.testing.assert_close(b[4][name], a[4][name], **close, msg=name)


def test_textbook_tensors_are_views_of_the_matrices_the_equations_read():
    layer = Recurrent("lstm", "scratch", 4, 3)
    params = layer.textbook_parameters()
    assert list(params) == ["W_i", "W_f", "W_o", "W_c", "U_i", "U_f", "U_o", "U_c", "b_i", "b_f", "b_o", "b_c"]
    assert params["W_i"].shape == (4, 3) and params["U_c"].shape == (3, 3) and params["b_o"].shape == (3,)
    with torch.no_grad():
        params["U_f"].fill_(0.5)  # writes through to U = [U_i U_f U_o U_c]
    assert (layer.cells[0].U[:, 3:6] == 0.5).all() and (layer.textbook_parameters()["U_f"] == 0.5).all()
    outputs, _ = layer(torch.randn(2, 5, 4))
    outputs.sum().backward()
    grads = layer.textbook_gradients()
    assert list(grads) == list(params) and all(g is not None and g.shape == params[n].shape for n, g in grads.items())
    torch.testing.assert_close(grads["W_o"], layer.cells[0].W.grad[:, 6:9])


def test_record_still_gives_every_gate():
    layer = Recurrent("lstm", "scratch", 4, 3)
    x = torch.randn(1, 6, 4)
    recorded = layer.record(x)
    assert set(recorded) == {"input_gate", "forget_gate", "output_gate", "cell_state", "hidden"}
    outputs, _ = layer(x)
    torch.testing.assert_close(recorded["hidden"], outputs[0].detach().t(), atol=1e-6, rtol=0)
