"""The instruments: gradient flow through time, Pascanu's gauge, gate saturation, and their rate."""

from dataclasses import replace

import pytest
import torch

from engine import instruments
from engine.config import build_config
from engine.models import build_model
from engine.runner import Runner
from engine.tasks import make_task

CELLS = ("srn", "lstm", "gru")
IMPLS = ("torch", "scratch", "naive")


def digit_setup(cell, impl, **options):
    # naive (the textbook's unfused cells) is bench's and sweep's, not a train option
    config = build_config(cell=cell, impl="scratch" if impl == "naive" else impl, length=5, hidden=5, embed=4,
                          batch_size=16, init="xavier", **options)
    config = replace(config, impl=impl)
    task = make_task(config, torch.device("cpu"))
    model = build_model(config)
    batch = next(iter(task.batches(1)))
    return model, task, batch


def reference_grad_h_norms(model, digits, labels, loss_fn) -> list[float]:
    """The equations written out gate by gate, ``retain_grad`` on each h_t, backward of the loss."""
    p = {name: tensor.detach() for name, tensor in model.rnn.textbook_parameters().items()}
    cell, reset_after = model.rnn.cell, model.rnn.reset_after
    x = model.embedding(digits).detach()  # [batch, time, embed]
    h = torch.zeros(x.shape[0], model.rnn.hidden, requires_grad=True)
    c = torch.zeros_like(h)
    hs = []
    for t in range(x.shape[1]):
        x_t = x[:, t]
        if cell == "srn":
            h = torch.tanh(x_t @ p["W"] + h @ p["U"] + p["b"])
        elif cell == "lstm":
            i = torch.sigmoid(x_t @ p["W_i"] + h @ p["U_i"] + p["b_i"])
            f = torch.sigmoid(x_t @ p["W_f"] + h @ p["U_f"] + p["b_f"])
            o = torch.sigmoid(x_t @ p["W_o"] + h @ p["U_o"] + p["b_o"])
            c = f * c + i * torch.tanh(x_t @ p["W_c"] + h @ p["U_c"] + p["b_c"])
            h = o * torch.tanh(c)
        else:
            r = torch.sigmoid(x_t @ p["W_r"] + h @ p["U_r"] + p["b_r"])
            z = torch.sigmoid(x_t @ p["W_z"] + h @ p["U_z"] + p["b_z"])
            recurrent = r * (h @ p["U_h"]) if reset_after else (r * h) @ p["U_h"]
            h = z * h + (1 - z) * torch.tanh(x_t @ p["W_h"] + recurrent + p["b_h"])
        h.retain_grad()
        hs.append(h)
    loss_fn(model.linear(h), labels).backward()
    return [h.grad.norm().item() for h in hs]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", CELLS)
def test_flow_equals_autograd_on_each_h_t_and_sigma_max_the_matrix_norm(cell, impl):
    torch.manual_seed(0)
    model, task, batch = digit_setup(cell, impl)
    with torch.no_grad():  # weights big enough that the norms differ along the sequence
        for name, tensor in model.rnn.textbook_parameters().items():
            tensor.normal_(0.0, 0.6)
    flow = instruments.measure_flow(model, task, batch)
    expected = reference_grad_h_norms(model, *batch, task.loss_fn)
    assert flow["grad_h_norms"] == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert flow["ratio"] == pytest.approx(expected[0] / expected[-1], rel=1e-5)
    matrices = {name: t for name, t in model.rnn.textbook_parameters().items() if name.startswith("U")}
    assert list(flow["sigma_max"]) == list(matrices)
    for name, U in matrices.items():
        assert flow["sigma_max"][name] == pytest.approx(torch.linalg.matrix_norm(U.detach(), ord=2).item(), rel=1e-6)
    sigmoid = {"U_i", "U_f", "U_o", "U_r", "U_z"}
    assert flow["inverse_gamma"] == {name: 4.0 if name in sigmoid else 1.0 for name in matrices}


def test_measuring_leaves_the_training_gradients_and_weights_alone():
    model, task, batch = digit_setup("lstm", "torch")
    task.train_loss(model, batch).backward()
    before = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    instruments.measure_flow(model, task, batch)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), weights[name])
        if name in before:
            assert torch.equal(p.grad, before[name]), name


def test_the_srn_step_jacobian_is_diag_of_tanh_derivative_times_U():
    model, task, batch = digit_setup("srn", "scratch")
    flow = instruments.measure_flow(model, task, batch)
    with model.rnn.equations_recorded() as steps:
        model(batch[0])
    h_last = steps[-1]["hidden"].detach()  # [batch, hidden]
    U = model.rnn.textbook_parameters()["U"].detach()
    # h_T = tanh(... + h_{T-1} U): ∂h_T[i]/∂h_{T-1}[j] = (1 - h_T[i]^2) U[j, i]
    jacobians = ((1 - h_last**2).unsqueeze(2) * U.t().unsqueeze(0))[:instruments.JACOBIAN_EXAMPLES]
    expected = torch.linalg.matrix_norm(jacobians, ord=2).mean().item()
    assert flow["jacobian_sigma_max"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("impl", ("torch", "scratch"))
@pytest.mark.parametrize("cell", CELLS)
def test_the_step_jacobian_equals_autograds_through_the_whole_recorded_forward(cell, impl):
    """The gauge runs the last step again on a few examples; through the whole batch's graph the
    Jacobian of those examples is the same."""
    model, task, batch = digit_setup(cell, impl, seed=3)
    flow = instruments.measure_flow(model, task, batch)
    with model.rnn.equations_recorded() as steps:
        model(batch[0])
    h_last, h_before = steps[-1]["hidden"], steps[-2]["hidden"]
    batch_size, units = h_last.shape
    rows = [torch.autograd.grad(h_last[:, i].sum(), h_before, retain_graph=True)[0] for i in range(units)]
    jacobians = torch.stack(rows, dim=1)[:instruments.JACOBIAN_EXAMPLES]  # [examples, i, j]
    expected = torch.linalg.matrix_norm(jacobians.double(), ord=2).mean().item()
    assert flow["jacobian_sigma_max"] == pytest.approx(expected, rel=1e-5)


def test_the_language_model_flow_covers_its_window_and_keeps_the_carried_state():
    config = build_config(task="lm", cell="gru", impl="torch", seq_len=7, batch_size=3, hidden=6, embed=0)
    task = make_task(config, torch.device("cpu"))
    model = build_model(config, len(task.vocabulary))
    batches = task.batches(1)
    task.train_loss(model, next(batches))
    carried = task.state.clone()
    flow = instruments.measure_flow(model, task, next(batches))
    assert len(flow["grad_h_norms"]) == 7 and all(value > 0 for value in flow["grad_h_norms"])
    assert torch.equal(task.state, carried)


@pytest.mark.parametrize("cell", CELLS)
def test_saturation_counts_the_gates_and_hidden_units_on_the_dev_set(cell):
    model, task, _ = digit_setup(cell, "torch")
    generator = torch.Generator().manual_seed(3)  # its own: weights that saturate whatever ran before
    with torch.no_grad():
        for tensor in model.rnn.textbook_parameters().values():
            tensor.normal_(0.0, 10.0, generator=generator)
    reading = instruments.measure_saturation(model, task.sequences("dev"))
    with model.rnn.equations_recorded() as steps, torch.no_grad():
        model(task.sequences("dev"))
    for name in instruments.SATURATING[cell]:
        values = torch.stack([step[name] for step in steps])
        assert reading["low"][name] == pytest.approx((values < 0.1).double().mean().item())
        assert reading["high"][name] == pytest.approx((values > 0.9).double().mean().item())
    hidden = torch.stack([step["hidden"] for step in steps])
    assert reading["hidden_saturated"] == pytest.approx((hidden.abs() > 0.99).double().mean().item())
    assert reading["hidden_saturated"] > 0.0  # large weights saturate some units
    assert set(reading["low"]) == set(instruments.SATURATING[cell])


def test_the_rate_rule_measures_every_step_under_a_speed_cap_and_by_time_at_full_speed():
    interval = instruments.FLOW_INTERVAL_S
    assert interval <= 0.1  # at least 10 measurements a second of training
    assert instruments.flow_due(speed=20.0, now=5.0, last_measured=5.0, step_seconds=0.001)
    # full speed, 10 ms steps: not at 50 ms, yes at the last step that starts within the interval
    assert not instruments.flow_due(speed=0.0, now=5.05, last_measured=5.0, step_seconds=0.01)
    assert instruments.flow_due(speed=0.0, now=5.0 + interval - 0.005, last_measured=5.0, step_seconds=0.01)
    # steps slower than the interval: every one is measured
    assert instruments.flow_due(speed=0.0, now=5.2, last_measured=5.0, step_seconds=0.2)


def test_a_capped_run_sends_a_flow_event_after_every_step_and_saturation_with_every_evaluation(tmp_path):
    events = []
    config = build_config(cell="lstm", length=5, epochs=1, batch_size=100, speed=1000.0,
                          checkpoint_dir=str(tmp_path))
    Runner(config, events.append).run()
    steps = [e.step for e in events if e.type == "step"]
    flows = [e for e in events if e.type == "flow"]
    assert [e.step for e in flows] == steps == [1, 2, 3]
    assert all(len(e.grad_h_norms) == 5 and set(e.sigma_max) == {"U_i", "U_f", "U_o", "U_c"} for e in flows)
    kinds = [e.type for e in events]
    assert kinds[kinds.index("flow") - 1] == "step"  # a step's flow follows it
    dev = [i for i, e in enumerate(events) if e.type == "eval" and e.split == "dev"]
    assert dev and all(events[i + 1].type == "saturation" for i in dev)
    assert set(events[dev[0] + 1].low) == {"input_gate", "forget_gate", "output_gate"}


def test_the_bare_loop_measures_nothing(tmp_path):
    events = []
    config = build_config(length=5, epochs=1, batch_size=100, speed=1000.0, checkpoint_dir=str(tmp_path))
    Runner(config, events.append, monitor=False).run()
    assert [e.step for e in events if e.type == "eval" and e.split == "dev"] == [3]
    assert not [e for e in events if e.type in ("flow", "saturation")]


def test_headless_names_a_language_models_dev_score_a_perplexity():
    import io

    from engine import events as ev
    from engine.headless import HeadlessPrinter

    out = io.StringIO()
    HeadlessPrinter(stream=out)(ev.Eval(step=250, split="dev", perplexity=21.596, loss=3.07, is_best=True))
    assert out.getvalue().splitlines() == ["[Evaluate] dev ppl: 21.596, dev loss: 3.07 (best so far)"]


def test_headless_prints_the_flow_and_saturation_with_each_evaluation():
    import io

    from engine import events as ev
    from engine.headless import HeadlessPrinter

    out = io.StringIO()
    printer = HeadlessPrinter(stream=out)
    printer(ev.Flow(step=250, grad_h_norms=[3.1e-5, 1.0], ratio=3.1e-5, sigma_max={"U": 0.93},
                    inverse_gamma={"U": 1.0}, jacobian_sigma_max=0.5))
    printer(ev.Eval(step=250, split="dev", accuracy=0.1, loss=2.0))
    printer(ev.Saturation(step=250, cell="lstm", low={"forget_gate": 0.125}, high={"forget_gate": 0.5},
                          hidden_saturated=0.25))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[Evaluate] dev score: 0.1")
    assert lines[1] == "[Flow] step 250: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ 3.1e-05, σ_max(U) 0.93 (1/γ = 1), σ_max(∂h_T/∂h_{T-1}) 0.5"
    assert lines[2] == "[Saturation] step 250 (dev): forget_gate <0.1 12%, >0.9 50%; |h| > 0.99 25%"
    printer(ev.Eval(step=260, split="dev", accuracy=0.2, loss=1.9))  # no flow measured since step 250
    assert [line for line in out.getvalue().splitlines() if line.startswith("[Flow]")] == [lines[1]]
