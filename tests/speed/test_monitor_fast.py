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
from engine.monitor import AlarmWatch, GradientNorms, copy_state, measure
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


@pytest.mark.parametrize("impl", ["torch", "scratch"])
@pytest.mark.parametrize("preset", ["explode", "memory"])
def test_gradients_stay_in_one_buffer_across_steps(preset, impl):
    """Backward and zero_grad keep writing into the flat buffer: the views are built once, not every step."""
    model = build_model(build_config(preset, impl=impl))
    norms = GradientNorms(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    _backward(model)
    norms.measure()
    flat, linked = norms.flat, list(norms.linked)
    assert flat is not None and len(flat.view_blocks) == len(model.textbook_gradients())
    for step in range(1, 4):
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        _backward(model, step)
        assert norms._current() and all(a is b for a, b in zip(norms.linked, linked))
        fast, plain = norms.measure("1"), measure(model.textbook_gradients(), "1")
        assert norms.flat is flat
        assert math.isclose(fast.total, plain.total, rel_tol=1e-5)
    for parameter in (p for p in model.parameters() if p.requires_grad):
        start = (parameter.grad.data_ptr() - flat.flat.data_ptr()) // 4
        assert 0 <= start < flat.flat.numel()


@pytest.mark.parametrize("impl", ["torch", "scratch"])
@pytest.mark.parametrize("norm_type", ["2", "1", "inf"])
def test_captured_steps_collect_the_norms_each_step_had(impl, norm_type):
    """Norms kept in the ring and read later are the ones measured at the step, across a full ring
    and a replaced .grad."""
    model = build_model(build_config("memory", impl=impl))
    norms = GradientNorms(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    expected, totals = [], []
    for step in range(70):
        optimizer.zero_grad(set_to_none=step == 5)  # step 5 replaces every .grad
        _backward(model, step)
        plain = measure(model.textbook_gradients(), norm_type)
        expected.append(plain.per_parameter)
        totals.append((norms.capture(norm_type), plain.total))
        optimizer.step()
        if step == 10:
            assert len(norms.collect()) == 11
            expected = expected[11:]
    assert norms.flat is not None and norms.flat.capacity < 59  # the last 59 steps overflow the ring
    collected = norms.collect()
    assert len(collected) == len(expected) == 59 and norms.collect() == []
    for got, want in zip(collected, expected):
        assert list(got) == list(want)
        for name, value in want.items():
            assert math.isclose(got[name], value, rel_tol=1e-5, abs_tol=1e-9), name
    for got, want in totals:
        assert math.isclose(got, want, rel_tol=1e-5)


def _norms_with_one_gradient(value: float) -> GradientNorms:
    """The explode model's norms after a backward, with one element of U's gradient set to ``value``."""
    model = build_model(build_config("explode"))
    norms = GradientNorms(model)
    _backward(model)
    norms.measure()
    with torch.no_grad():
        model.rnn.net.weight_hh_l0.grad[0, 0] = value
    return norms


def test_gradients_beyond_the_square_range_of_float32_keep_finite_norms():
    norms = _norms_with_one_gradient(3e20)  # its square is beyond float32's range
    result = norms.measure()
    assert math.isclose(result.per_parameter["U"], 3e20, rel_tol=1e-6)
    assert math.isclose(result.total, 3e20, rel_tol=1e-6)
    assert math.isclose(norms.capture(), 3e20, rel_tol=1e-6)
    assert math.isclose(norms.collect()[-1]["U"], 3e20, rel_tol=1e-6)


def test_non_finite_gradients_show_as_non_finite_norms():
    result = _norms_with_one_gradient(float("nan")).measure()
    assert math.isnan(result.per_parameter["U"]) and math.isnan(result.total)


def test_running_median_is_statistics_median_of_the_window_positive_values():
    generator = random.Random(0)
    watch = AlarmWatch(ratio_threshold=math.inf)  # no alarms: only the window is exercised
    history = []
    for _ in range(500):
        value = generator.choice([0.0, generator.random(), generator.random() * 1e3])
        watch.observe(1.0, {"U": value})
        history = (history + [value])[-50:]
        positive = [v for v in history if v > 0]
        assert watch.median("U") == (statistics.median(positive) if positive else 0.0)


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


def _typed(value):
    """A decoded JSON value with the type of every number kept, for comparing two lines exactly."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


def test_the_step_encoder_writes_what_to_json_writes():
    """The same keys in the same order, the same values of the same types, to the last bit."""
    generator = random.Random(1)
    odd_names = ["W", "U_i", 'b"%s\\', "单元 %d", "linear.weight"]
    values = [0.0, 1e-300, 3.5, 7621075.5, 1 / 3, -2.0, float("nan"), float("inf"), 5, True]
    for index in range(500):
        names = generator.sample(odd_names, generator.randint(0, len(odd_names)))
        if index % 3 == 0:  # the values the general encoder must handle: NaN, infinity, ints, bools

            def pick():
                return generator.choice(values)
        else:

            def pick():
                return generator.random() * 10 ** generator.randint(-8, 8)
        step = ev.Step(run=generator.choice(["r", "srn-digits-1", "run %d \"x\""]), step=index, t=pick(),
                       epoch=generator.randint(1, 9), epochs=50, loss=pick(), grad_norms={n: pick() for n in names},
                       total_norm=pick(), clip_on=generator.random() < 0.5, clip_max_norm=pick(),
                       clip_norm_type=generator.choice(["1", "2", "inf"]), clip_factor=pick(),
                       skipped=generator.random() < 0.5, lr=pick(), steps_per_s=pick())
        line, plain = encode(step), step.to_json()
        assert list(json.loads(line)) == list(json.loads(plain))
        assert _typed(json.loads(line)) == _typed(json.loads(plain))
        assert ev.from_json(line).grad_norms.keys() == step.grad_norms.keys()


def test_encode_is_to_json_with_and_without_non_finite_values(tmp_path):
    fine = ev.Step(run="r", step=3, t=0.5, loss=1.25, grad_norms={"W": 0.1, "U": 2.0})
    broken = ev.Step(run="r", step=4, t=0.6, loss=float("nan"), grad_norms={"W": float("inf")})
    assert json.loads(encode(fine)) == json.loads(fine.to_json())
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


def test_step_rows_are_written_as_the_events_they_stand_for(tmp_path):
    """Rows handed to the writer come out as Step events (each followed by its own events), in order,
    in the log and to callbacks alike; a row with a non-finite value takes the general encoder."""
    from engine.stream import StepRows

    names = ("W", "U", "b")
    records = [(step, step * 0.001234567, 1, 2.0 + step / 3, 10.0 * step, step % 2 == 0, 20.0, "2",
                1.0, False, 0.2, 812.34567) for step in range(1, 6)]
    records[2] = records[2][:3] + (float("nan"),) + records[2][4:9] + (True,) + records[2][10:]
    norms = [[step / 7, 0.0, 1e-30 * step] for step in range(1, 6)]
    alarm = ev.Alarm(run="r", step=3, kind="non_finite", parameter="loss", message="loss is nan")
    rows = StepRows("r", 50, names, records, norms, {2: [alarm]})
    events = rows.events()
    assert [type(event).__name__ for event in events] == ["Step"] * 3 + ["Alarm"] + ["Step"] * 2
    assert [event.step for event in events] == [1, 2, 3, 3, 4, 5]
    assert events[0] == ev.Step(run="r", step=1, t=0.0012, epoch=1, epochs=50, loss=2.0 + 1 / 3,
                                grad_norms={"W": 1 / 7, "U": 0.0, "b": 1e-30}, total_norm=10.0, clip_on=False,
                                clip_max_norm=20.0, clip_norm_type="2", clip_factor=1.0, skipped=False, lr=0.2,
                                steps_per_s=812.35)
    assert [_typed(json.loads(line)) for line in rows.lines()] == [_typed(json.loads(e.to_json())) for e in events]

    path = tmp_path / "log.jsonl"
    writer = EventWriter(str(path))
    seen = []
    writer.callbacks.append(seen.append)
    writer.emit(ev.Status(run="r", state="running"))
    writer.emit_steps(rows)
    writer.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["status", "step", "step", "step", "alarm", "step", "step"]
    assert seen[1:4] == events[:3] and seen[5:] == events[4:]
    assert seen[4] == alarm


@pytest.mark.parametrize("preset", ["explode", "clip", "memory"])
def test_the_monitored_loop_trains_as_the_bare_loop_does(tmp_path, preset):
    """Watching changes nothing in training: the same weights after the same steps, bit for bit
    without clipping; where clipping reuses the measured norm, its factor differs from torch's in
    the last bits, which the exploding network amplifies a little over the steps."""
    from engine.runner import Runner

    weights = {}
    for monitor in (True, False):
        config = build_config(preset, epochs=1, checkpoint_dir=str(tmp_path / str(monitor)),
                              runs_dir=str(tmp_path / str(monitor)), run_id=f"r{monitor}")
        runner = Runner(config, [].append, monitor=monitor)
        runner.run()
        assert runner.step > 0
        weights[monitor] = [p.detach().clone() for p in runner.model.parameters()]
    for watched, bare in zip(weights[True], weights[False]):
        if preset == "explode":
            assert torch.equal(watched, bare)
        else:
            torch.testing.assert_close(watched, bare, rtol=1e-4, atol=1e-4 * bare.abs().max().item())


def test_the_writer_writes_steps_in_bursts_and_answers_at_once(tmp_path):
    """After a burst, step rows wait for the writer's next one; a status (what a key press is
    answered with) and rows marked prompt (a speed cap) are written at once, with everything queued
    before them."""
    import time

    from engine.stream import StepRows

    def rows(step, prompt=False):
        record = (step, 0.1, 1, 1.0, 1.0, False, 20.0, "2", 1.0, False, 0.2, 10.0)
        return StepRows("r", 5, ("W",), [record], [[0.5]], {}, prompt)

    def lines_within(count, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            text = path.read_text()
            if text.count("\n") >= count:
                return [json.loads(line)["type"] for line in text.splitlines()]
            time.sleep(0.01)
        return [json.loads(line)["type"] for line in path.read_text().splitlines()]

    path = tmp_path / "log.jsonl"
    writer = EventWriter(str(path), interval=30.0)
    try:
        writer.emit(ev.Status(run="r", state="running"))
        assert lines_within(1, 5.0) == ["status"]
        writer.emit_steps(rows(1))
        assert lines_within(2, 0.5) == ["status"]  # waits for the next burst, 30 s away
        writer.emit(ev.Status(run="r", state="paused"))
        assert lines_within(3, 5.0) == ["status", "step", "status"]
        writer.emit_steps(rows(2))
        writer.emit_steps(rows(3, prompt=True))
        assert lines_within(5, 5.0) == ["status", "step", "status", "step", "step"]
    finally:
        writer.close()
