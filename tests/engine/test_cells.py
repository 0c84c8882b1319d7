import pytest
import torch

from engine.cells import Recurrent, side_by_side, unroll
from engine.config import build_config
from engine.models import DigitSumModel
from engine.parameters import gate_names


def pair(cell, layers=1, bidirectional=False, hidden=7, inputs=5):
    torch.manual_seed(0)
    library = Recurrent(cell, "torch", inputs, hidden, layers, bidirectional, init="torch")
    scratch = Recurrent(cell, "scratch", inputs, hidden, layers, bidirectional, init="zeros",
                        reset_after=cell == "gru")
    scratch.load_textbook_parameters(library.textbook_parameters())
    return library, scratch


@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_scratch_and_torch_cells_agree_on_outputs_and_gradients(cell, layers, bidirectional):
    library, scratch = pair(cell, layers, bidirectional)
    x = torch.randn(3, 6, 5)
    out_library, state_library = library(x)
    out_scratch, state_scratch = scratch(x)
    torch.testing.assert_close(out_scratch, out_library, atol=1e-5, rtol=0)
    out_library.pow(2).sum().backward()
    out_scratch.pow(2).sum().backward()
    grads_library, grads_scratch = library.textbook_gradients(), scratch.textbook_gradients()
    assert list(grads_library) == list(grads_scratch)
    for name in grads_library:
        torch.testing.assert_close(grads_scratch[name], grads_library[name], atol=1e-5, rtol=1e-5, msg=name)


def test_the_scratch_lstm_matches_torch_nn_lstm_given_its_weights():
    torch.manual_seed(1)
    reference = torch.nn.LSTM(32, 32, batch_first=True)
    scratch = Recurrent("lstm", "scratch", 32, 32)
    weights, biases = reference.weight_ih_l0, reference.bias_ih_l0 + reference.bias_hh_l0
    order = {"i": 0, "f": 1, "c": 2, "o": 3}  # PyTorch packs i, f, g, o
    values = {}
    for gate, index in order.items():
        rows = slice(index * 32, (index + 1) * 32)
        values[f"W_{gate}"] = weights[rows].t()
        values[f"U_{gate}"] = reference.weight_hh_l0[rows].t()
        values[f"b_{gate}"] = biases[rows]
    scratch.load_textbook_parameters(values)
    x = torch.randn(8, 20, 32)
    expected, (h, c) = reference(x)
    got, (h_scratch, c_scratch) = scratch(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(c_scratch, c, atol=1e-5, rtol=0)


def test_the_gru_functions_differ_as_documented():
    library, _ = pair("gru")
    d2l = Recurrent("gru", "scratch", 5, 7)  # reset gate before the product, as d2l
    d2l.load_textbook_parameters(library.textbook_parameters())
    x = torch.randn(2, 6, 5)
    assert (d2l(x)[0] - library(x)[0]).abs().max() > 1e-4


@pytest.mark.parametrize("cell, names", [
    ("srn", ["W", "U", "b"]),
    ("lstm", ["W_i", "W_f", "W_o", "W_c", "U_i", "U_f", "U_o", "U_c", "b_i", "b_f", "b_o", "b_c"]),
    ("gru", ["W_r", "W_z", "W_h", "U_r", "U_z", "U_h", "b_r", "b_z", "b_h"]),
])
@pytest.mark.parametrize("impl", ["torch", "scratch"])
def test_textbook_names_whichever_implementation(cell, names, impl):
    assert gate_names(cell) == names
    layer = Recurrent(cell, impl, 4, 6)
    assert layer.names == names
    shapes = {name: tuple(t.shape) for name, t in layer.textbook_parameters().items()}
    assert shapes[names[0]] == (4, 6) and shapes[f"U{names[0][1:]}"] == (6, 6) and shapes[f"b{names[0][1:]}"] == (6,)


@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
def test_recorded_gates_follow_the_forward_pass(cell):
    library, _ = pair(cell)
    x = torch.randn(1, 6, 5)
    recorded = library.record(x)
    outputs, _ = library(x)
    assert all(matrix.shape == (7, 6) for matrix in recorded.values())
    torch.testing.assert_close(recorded["hidden"], outputs[0].t(), atol=1e-5, rtol=0)
    if cell == "lstm":
        for gate in ("input_gate", "forget_gate", "output_gate"):
            assert 0 <= recorded[gate].min() and recorded[gate].max() <= 1


def test_the_torch_second_bias_is_frozen_at_zero():
    layer = Recurrent("lstm", "torch", 4, 6)
    assert not layer.net.bias_hh_l0.requires_grad and layer.net.bias_hh_l0.abs().sum() == 0


@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
def test_the_same_seed_gives_the_same_weights_in_either_implementation(cell):
    models = [DigitSumModel(build_config(cell=cell, impl=impl, init="xavier", length=5)) for impl in ("torch", "scratch")]
    first, second = (m.textbook_parameters() for m in models)
    assert list(first) == list(second)
    for name in first:
        torch.testing.assert_close(first[name], second[name], msg=name)


def test_the_explosion_chapter_initialises_w_u_b_to_zero():
    model = DigitSumModel(build_config(preset="explode"))
    params = model.textbook_parameters()
    assert all(params[name].abs().sum() == 0 for name in ("W", "U", "b"))
    assert params["embedding"].abs().sum() > 0


@pytest.mark.parametrize("cell, init", [("srn", "zeros"), ("lstm", "xavier")])
def test_the_memory_preset_starts_from_the_sources_initialisation(cell, init):
    model = DigitSumModel(build_config(preset="memory", cell=cell, impl="scratch"))
    params = model.textbook_parameters()
    weights = [name for name in model.rnn.names if not name.startswith("b")]
    assert all(params[name].abs().sum() == 0 for name in model.rnn.names) == (init == "zeros")
    if init == "xavier":
        bound = (6.0 / (32 + 32)) ** 0.5  # Xavier-uniform for a [32, 32] matrix
        assert all(0.9 * bound < params[name].abs().max() <= bound for name in weights)
        assert all(params[name].abs().sum() == 0 for name in model.rnn.names if name.startswith("b"))


def test_every_hidden_state_is_in_the_graph_and_its_gradient_follows_bptt():
    # NNDL 6.2.1: dL/dh_{t-1} = (dL/dh_t * (1 - h_t^2)) U^T for an SRN whose loss reads only h_T
    torch.manual_seed(0)
    layer = Recurrent("srn", "scratch", 5, 7, init="torch")
    params = layer.textbook_parameters()
    steps, h_T = unroll("srn", *side_by_side(params, "srn"), torch.randn(3, 6, 5))
    states = [step["hidden"] for step in steps]
    for h in states:
        h.retain_grad()
    weights = torch.randn(3, 7)
    (h_T * weights).sum().backward()
    assert h_T is states[-1]
    torch.testing.assert_close(states[-1].grad, weights)
    for t in range(len(states) - 1, 0, -1):
        expected = (states[t].grad * (1 - states[t] ** 2)) @ params["U"].t()
        torch.testing.assert_close(states[t - 1].grad, expected)


@pytest.mark.parametrize("cell", ["srn", "lstm"])
def test_a_checkpoint_moves_between_implementations(tmp_path, cell):
    from engine import checkpoint as ckpt

    models = {impl: DigitSumModel(build_config(cell=cell, impl=impl, init="torch", length=5, seed=seed))
              for impl, seed in (("torch", 1), ("scratch", 2))}
    digits = torch.randint(0, 10, (4, 5))
    for source, target in (("torch", "scratch"), ("scratch", "torch")):
        path = str(tmp_path / f"{source}.pt")
        ckpt.save(path, {"config": {}, "parameters": ckpt.snapshot_parameters(models[source])})
        models[target].load_textbook_parameters(ckpt.load(path)["parameters"])
        torch.testing.assert_close(models[target](digits), models[source](digits), atol=1e-5, rtol=0)
