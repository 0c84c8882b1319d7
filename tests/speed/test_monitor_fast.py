"""The monitor's fast paths give exactly what the plain ones give."""

import json
import math
import random
import statistics

import pytest
import torch

from engine import events as ev
from engine.config import build_config
from engine.models import build_model
from engine.monitor import AlarmWatch, GradientNorms, RecentNorms, copy_state, measure
from engine.stream import EventWriter, encode


def _backward(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    digits = torch.randint(0, 10, (8, 10), generator=generator)
    labels = torch.randint(0, 19, (8,), generator=generator)
    torch.nn.functional.cross_entropy(model(digits), labels).backward()


@pytest.mark.parametrize("impl", ["torch", "scratch", "naive"])
@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
def test_cached_view_norms_equal_measure(cell, impl):
    config = build_config("memory", cell=cell, impl="scratch" if impl == "naive" else impl)
    if impl == "naive":
        from dataclasses import replace

        config = replace(config, impl="naive")
    model = build_model(config)
    norms = GradientNorms(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(3):
        optimizer.zero_grad(set_to_none=step == 2)  # the last step replaces every .grad
        _backward(model, step)
        for norm_type in ("2", "1", "inf"):
            fast, plain = norms.measure(norm_type), measure(model.textbook_gradients(), norm_type)
            assert list(fast.per_parameter) == list(plain.per_parameter)
            for name, value in plain.per_parameter.items():
                assert math.isclose(fast.per_parameter[name], value, rel_tol=1e-5, abs_tol=1e-9), name
            assert math.isclose(fast.total, plain.total, rel_tol=1e-5)
        before = {n: g.clone() for n, g in model.textbook_gradients().items()}
        norms.scale(0.5)
        for name, grad in model.textbook_gradients().items():
            torch.testing.assert_close(grad, before[name] * 0.5)
        optimizer.step()


def test_non_finite_gradients_show_as_non_finite_norms():
    model = build_model(build_config("explode"))
    norms = GradientNorms(model)
    _backward(model)
    norms.measure()
    with torch.no_grad():
        model.rnn.net.weight_hh_l0.grad[0, 0] = float("nan")
    result = norms.measure()
    assert math.isnan(result.per_parameter["U"]) and math.isnan(result.total)


def test_recent_norms_median_is_statistics_median_of_positive_values():
    generator = random.Random(0)
    window = RecentNorms(50)
    history = []
    for _ in range(500):
        value = generator.choice([0.0, generator.random(), generator.random() * 1e3])
        window.push(value)
        history = (history + [value])[-50:]
        positive = [v for v in history if v > 0]
        if positive:
            assert window.median() == statistics.median(positive)


def test_alarm_watch_still_sees_an_explosion():
    watch = AlarmWatch()
    for _ in range(30):
        assert not [r for r in watch.observe(10.0, {"W": 1.0, "U": 2.0}) if r.kind == "explosion"]
    reports = watch.observe(10.0, {"W": 1.0, "U": 500.0})
    assert [(r.kind, r.parameter, r.ratio) for r in reports] == [("explosion", "U", 250.0)]


def test_copy_state_is_a_deep_copy():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    copied = copy_state(state)
    assert copied["param_groups"] == state["param_groups"]
    for key, values in state["state"].items():
        for name, tensor in values.items():
            assert torch.equal(copied["state"][key][name], tensor)
            assert copied["state"][key][name].data_ptr() != tensor.data_ptr()


def test_encode_is_to_json_with_and_without_non_finite_values(tmp_path):
    fine = ev.Step(run="r", step=3, t=0.5, loss=1.25, grad_norms={"W": 0.1, "U": 2.0})
    broken = ev.Step(run="r", step=4, t=0.6, loss=float("nan"), grad_norms={"W": float("inf")})
    assert encode(fine) == fine.to_json()
    assert encode(broken) == broken.to_json()
    path = tmp_path / "log.jsonl"
    writer = EventWriter(str(path))
    seen = []
    writer.callbacks.append(seen.append)
    for step in range(1000):
        writer.emit(ev.Step(run="r", step=step, loss=float(step)))
    writer.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1000))
    assert [event.step for event in seen] == list(range(1000))
