import math
import struct

import pytest

from engine import commands as cmd

from engine import events as ev
from engine import logs


def sample(cls):
    """An instance of every event and command with non-default values, NaN and inf included."""
    values = {
        ev.RunStarted: dict(config={"cell": "srn", "lr": 0.2}, parameters={"W": [32, 32]}, dataset={"train": 300},
                            total_steps=250, steps_per_epoch=5, vocabulary=["0", "1"],
                            settings={"clip_on": False, "clip_max_norm": 20.0, "clip_norm_type": "2", "lr": 0.2,
                                      "speed": 0.0}),
        ev.Step: dict(epoch=1, loss=math.nan, grad_norms={"W": math.inf, "U": -math.inf, "b": 1.5},
                      total_norm=math.inf, clip_factor=0.0, skipped=True, steps_per_s=812.5),
        ev.Settings: dict(clip_on=True, clip_max_norm=5.0, clip_norm_type="1", lr=0.05, speed=20.0, cause="command"),
        ev.Eval: dict(split="dev", accuracy=0.5, loss=math.nan, is_best=True, best=0.5),
        ev.Alarm: dict(kind="explosion", parameter="U", value=7621075.5, ratio=math.inf, median=20.0),
        ev.Gates: dict(tokens=["6", "7"], matrices={"forget_gate": [[0.1, 0.9]]}, request="probe"),
        ev.Flow: dict(grad_h_norms=[3.1e-05, 0.25, math.nan, 1.0], ratio=math.nan, sigma_max={"U_i": 1.25, "U_c": math.inf},
                      inverse_gamma={"U_i": 4.0, "U_c": 1.0}, jacobian_sigma_max=0.5),
        ev.Saturation: dict(split="dev", cell="lstm", low={"forget_gate": 0.125}, high={"forget_gate": math.nan},
                            hidden_saturated=0.03125),
        ev.Prediction: dict(tokens=["6", "7"], predicted=13, top=[[13, 0.9], [12, 0.05]], target=13),
        ev.Generation: dict(prefix="床前", text="明月光", done=True, unknown=["☃"], request_id=3),
        ev.Checkpoint: dict(path="checkpoints/x/best.pt", kind="best", score=0.9),
        ev.Status: dict(state="failed", message="cannot write the run log: No space left on device"),
        ev.Notice: dict(level="error", message="'x' is not a digit 0-9"),
        ev.RunFinished: dict(reason="stopped", best_dev=0.3, test_accuracy=0.25),
        cmd.SetClip: dict(on=True, max_norm=20.0, norm_type="inf"),
        cmd.SetLr: dict(lr=0.05),
        cmd.StepCommand: dict(n=5),
        cmd.SetSpeed: dict(steps_per_s=math.inf),
        cmd.GatesCommand: dict(input="6 7 0"),
        cmd.Predict: dict(input="6 7"),
        cmd.Generate: dict(prefix="time traveller", length=50, temperature=0.8, top_k=5, seed=1),
    }.get(cls, {})
    if issubclass(cls, ev.Event):
        values = {"run": "srn-digits-1", "step": 7, "t": 0.25, **values}
    return cls(**values)


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.type)
def test_every_event_round_trips(cls):
    event = sample(cls)
    line = event.to_json()
    assert "\n" not in line
    decoded = ev.from_json(line)
    assert type(decoded) is cls
    assert decoded.to_json() == line  # NaN != NaN, so compare the encodings


@pytest.mark.parametrize("cls", list(cmd.COMMAND_TYPES.values()), ids=lambda c: c.type)
def test_every_command_round_trips(cls):
    command = sample(cls)
    decoded = cmd.command_from_json(command.to_json())
    assert type(decoded) is cls and decoded.to_json() == command.to_json()


def test_nonfinite_values_are_spelled_explicitly_and_read_back():
    line = sample(ev.Step).to_json()
    assert "NaN" not in line and "Infinity" not in line
    decoded = ev.from_json(line)
    assert math.isnan(decoded.loss)
    assert decoded.grad_norms["W"] == math.inf and decoded.grad_norms["U"] == -math.inf
    assert decoded.grad_norms["b"] == 1.5


def test_every_event_carries_type_run_step_and_time():
    import json

    for cls in ev.EVENT_TYPES.values():
        payload = json.loads(sample(cls).to_json())
        assert {"type", "run", "step", "t"} <= set(payload)


def test_run_started_carries_the_schema_version():
    assert ev.from_json(sample(ev.RunStarted).to_json()).schema == ev.SCHEMA_VERSION


@pytest.mark.parametrize("line", ["", "{", "[1, 2]", '{"type": "nope"}', '{"type": "step", "loss": {"$float": "huge"}}'])
def test_malformed_lines_raise_decode_error(line):
    with pytest.raises(ev.DecodeError):
        ev.from_json(line)


@pytest.mark.parametrize("line", [
    '{"type": "step", "run": 1, "step": "abc", "t": "x", "loss": "zz"}',
    '{"type": "step", "run": "r", "loss": true}',
    '{"type": "step", "run": "r", "grad_norms": {"W": "big"}}',
    '{"type": "run_started", "run": "r", "config": "zz"}',
    '{"type": "eval", "run": "r", "accuracy": [0.5]}',
    '{"type": "flow", "run": "r", "grad_h_norms": [1.0, null]}',
])
def test_a_field_of_the_wrong_type_is_a_decode_error(line):
    with pytest.raises(ev.DecodeError, match="is not"):
        ev.from_json(line)


@pytest.mark.parametrize("line, missing", [('{"type": "step"}', "step, loss, grad_norms, total_norm"),
                                           ('{"type": "step", "step": 9, "loss": 1.5}', "grad_norms, total_norm"),
                                           ('{"type": "alarm", "step": 3}', "kind, value"),
                                           ('{"type": "eval", "split": "dev"}', "step")])
def test_a_line_without_the_fields_its_event_is_made_of_is_a_decode_error(line, missing):
    with pytest.raises(ev.DecodeError, match=f"without {missing}$"):
        ev.from_json(line)


def test_read_log_skips_a_truncated_last_line(tmp_path):
    path = tmp_path / "run.jsonl"
    lines = [sample(ev.RunStarted).to_json(), sample(ev.Step).to_json()]
    path.write_text("\n".join(lines) + "\n" + lines[1][:20])
    events, bad = logs.read_log(str(path))
    assert [e.type for e in events] == ["run_started", "step"] and bad == 1


def test_step_numbers_are_written_with_the_precision_of_float32():
    import struct

    def single(value):
        return struct.unpack("f", struct.pack("f", value))[0]

    norms = {"W": single(86.7), "U": single(1.0234567e7), "b": single(3.3e-9), "W_f": single(0.104274996)}
    step = ev.Step(loss=single(41.2), grad_norms=norms, total_norm=single(1.0e7 + 3))
    line = step.to_json()
    assert "86.699997" in line and "86.69999694824219" not in line  # 8 digits where they suffice, not 17
    assert "0.104274996" in line  # 9 where 8 would read back as another float32
    decoded = ev.from_json(line)
    assert {name: single(value) for name, value in decoded.grad_norms.items()} == norms
    assert single(decoded.loss) == step.loss and single(decoded.total_norm) == step.total_norm


def test_an_evaluations_accuracy_is_the_count_over_the_examples_and_its_loss_a_float32(tmp_path):
    import json

    from engine.config import build_config
    from engine.runner import Runner

    events = []
    config = build_config("explode", epochs=1, checkpoint_dir=str(tmp_path), runs_dir=str(tmp_path))
    Runner(config, events.append, instruments=False).run()
    examples = next(event for event in events if isinstance(event, ev.RunStarted)).dataset
    evals = [event for event in events if isinstance(event, ev.Eval)]
    assert {event.split for event in evals} == {"dev", "test"}
    for event in evals:
        written = json.loads(event.to_json())
        # 5 right of 100 reads 0.05 (float32's mean wrote 0.05000000074505806)
        count = examples[event.split]
        assert written["accuracy"] == round(written["accuracy"] * count) / count
        assert struct.unpack("f", struct.pack("f", written["loss"])) == struct.unpack("f", struct.pack("f", event.loss))
        assert len(repr(written["loss"]).replace(".", "").lstrip("0")) <= 9  # not float64's 17 digits


def test_flow_readings_keep_six_digits_and_their_nans():
    event = ev.Flow(grad_h_norms=[1 / 3, math.nan], ratio=2 / 3, sigma_max={"U": math.inf}, jacobian_sigma_max=0.1)
    decoded = ev.from_json(event.to_json())
    assert decoded.grad_h_norms[0] == pytest.approx(1 / 3, rel=1e-6) and math.isnan(decoded.grad_h_norms[1])
    assert decoded.ratio == pytest.approx(2 / 3, rel=1e-6) and decoded.sigma_max == {"U": math.inf}
