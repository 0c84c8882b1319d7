"""The gradient norms, the alarms and the event writer."""

import json
import math
import random
import statistics
import time

import pytest
import torch

from engine import events as ev
from engine.config import build_config
from engine.models import build_model
from engine.monitor import AlarmWatch, GradientNorms, measure
from engine.stream import EventWriter


def _backward(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    digits = torch.randint(0, 10, (8, 10), generator=generator)
    labels = torch.randint(0, 19, (8,), generator=generator)
    torch.nn.functional.cross_entropy(model(digits), labels).backward()


@pytest.mark.parametrize("impl", ["torch", "scratch"])
@pytest.mark.parametrize("cell", ["srn", "lstm", "gru"])
def test_norms_are_each_textbook_gradients_norm_and_the_total_is_clippings(cell, impl):
    model = build_model(build_config("memory", cell=cell, impl=impl))
    parameters = [p for p in model.parameters() if p.requires_grad]
    norms = GradientNorms(model)
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    for step in range(3):
        optimizer.zero_grad(set_to_none=step == 2)  # the last step replaces every .grad: new views
        _backward(model, step)
        for norm_type, order in (("2", 2.0), ("1", 1.0), ("inf", math.inf)):
            found = norms.measure(norm_type)
            for name, grad in model.textbook_gradients().items():
                expected = torch.linalg.vector_norm(grad).item() if grad is not None else 0.0
                assert math.isclose(found.per_parameter[name], expected, rel_tol=1e-5, abs_tol=1e-9), name
            total = torch.nn.utils.get_total_norm([p.grad for p in parameters], norm_type=order).item()
            assert math.isclose(found.total, total, rel_tol=1e-5)
        before = {n: g.clone() for n, g in model.textbook_gradients().items()}
        norms.scale(0.5)
        for name, grad in model.textbook_gradients().items():
            torch.testing.assert_close(grad, before[name] * 0.5)
        optimizer.step()


def _norms_with_one_gradient(value: float) -> GradientNorms:
    """The explode model's norms after a backward, with one element of U's gradient set to ``value``."""
    model = build_model(build_config("explode"))
    norms = GradientNorms(model)
    _backward(model)
    with torch.no_grad():
        model.textbook_gradients()["U"][0, 0] = value
    return norms


def test_gradients_beyond_the_square_range_of_float32_keep_finite_norms():
    result = _norms_with_one_gradient(3e20).measure()  # its square is beyond float32's range
    assert math.isclose(result.per_parameter["U"], 3e20, rel_tol=1e-6)
    assert math.isclose(result.total, 3e20, rel_tol=1e-6)


def test_non_finite_gradients_show_as_non_finite_norms():
    result = _norms_with_one_gradient(float("nan")).measure()
    assert math.isnan(result.per_parameter["U"]) and math.isnan(result.total)
    assert measure({"W": None}).per_parameter == {"W": 0.0}


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


def test_an_explosion_then_saturation_then_health():
    watch = AlarmWatch(healthy_steps=10)
    for _ in range(30):
        assert watch.observe(10.0, {"W": 1.0, "U": 2.0}) == []
    reports = watch.observe(10.0, {"W": 1.0, "U": 500.0})
    assert [(r.kind, r.parameter, r.ratio) for r in reports] == [("explosion", "U", 250.0)]
    assert watch.observe(10.0, {"W": 1.0, "U": 600.0}) == []  # not tenfold more: not announced again
    kinds = [r.kind for _ in range(5) for r in watch.observe(10.0, {"W": 1.0, "U": 0.0})]
    assert kinds == ["saturation"]  # the fifth collapsed step while the loss stays high
    kinds = [r.kind for _ in range(10) for r in watch.observe(1.0, {"W": 1.0, "U": 0.5})]
    assert kinds == ["healthy"]


def test_a_gradient_growing_from_almost_nothing_is_not_an_explosion():
    # lm-tangshi's first steps: the output gate's recurrent gradient wakes up from near zero (x365),
    # while the total norm stays under the clip of 1
    watch = AlarmWatch()
    reports = [watch.observe(7.8, {"U_o": value, "U_c": 0.01}) for value in (2.0e-4, 5.8e-4, 4.1e-3, 0.212)]
    assert reports == [[]] * 4
    assert [r.kind for r in watch.observe(7.8, {"U_o": 500.0, "U_c": 0.01})] == ["explosion"]


def test_a_non_finite_step_is_announced_once():
    watch = AlarmWatch()
    assert [r.kind for r in watch.observe(math.nan, {"W": 1.0})] == ["non_finite"]
    assert watch.observe(1.0, {"W": math.inf}) == []


def test_the_alarm_state_survives_a_checkpoint():
    watch, copy = AlarmWatch(), AlarmWatch()
    for value in [1.0] * 30:
        watch.observe(10.0, {"U": value})
    copy.load_state_dict(torch.load(_saved(watch.state_dict()), weights_only=True))
    assert copy.observe(10.0, {"U": 500.0}) == watch.observe(10.0, {"U": 500.0})
    assert copy.state_dict() == watch.state_dict()


def _saved(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


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


def _wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_writer_writes_every_event_in_order_and_flushes_without_closing(tmp_path):
    log = tmp_path / "run.jsonl"
    seen = []
    writer = EventWriter(str(log), callbacks=[seen.append])
    events = [ev.Step(step=i, loss=1.0 / i, grad_norms={"W": float(i)}) for i in range(1, 200)]
    for event in events:
        writer.emit(event)
    # a follower of the log sees every step within a flush interval, while the writer is still open
    _wait_for(lambda: log.read_text().count("\n") == len(events))
    assert [ev.from_json(line).step for line in log.read_text().splitlines()] == list(range(1, 200))
    assert seen == events
    writer.emit(ev.Status(state="paused"))
    writer.written()  # returns once the status is in the log, the writer still open
    assert log.read_text().splitlines()[-1] == ev.Status(state="paused").to_json()
    writer.close()
    writer.written()  # a closed writer has written everything
    assert not writer.error


class Failing:
    def __init__(self, error):
        self.error, self.lines = error, []

    def write(self, text):
        if len(self.lines) >= 2:
            raise self.error
        self.lines.append(text)

    def flush(self):
        pass


@pytest.mark.parametrize("error, said", [(BrokenPipeError(32, "Broken pipe"), "it was closed"),
                                         (OSError(28, "No space left on device"), "No space left on device")])
def test_a_failing_sink_is_reported_and_the_others_keep_everything(tmp_path, error, said):
    log = tmp_path / "run.jsonl"
    stream = Failing(error)
    writer = EventWriter(str(log), stream=stream)
    for step in range(1, 6):
        writer.emit(ev.Step(step=step))
    writer.close()
    assert writer.error == f"cannot write the event stream: {said}"
    assert len(stream.lines) == 2 and log.read_text().count("\n") == 5


def test_a_run_whose_log_fails_stops_with_its_last_checkpoint(tmp_path):
    from engine.runner import Runner
    from engine.stream import LogWriteError

    events = []
    config = build_config("explode", epochs=2, checkpoint_dir=str(tmp_path), runs_dir=str(tmp_path))
    runner = Runner(config, events.append,
                    log_error=lambda: "cannot write the run log: No space left on device" if runner.step >= 3 else "")
    with pytest.raises(LogWriteError):
        runner.run()
    assert runner.step == 3
    assert [e.state for e in events if e.type == "status"][-1] == "failed"
    finished = events[-1]
    assert finished.type == "run_finished" and finished.reason == "failed"
    assert torch.load(finished.checkpoint, weights_only=True)["step"] == 3
    assert json.loads(ev.Status(message=events[-3].message).to_json())["message"].startswith("cannot write")
