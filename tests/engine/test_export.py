"""`rnnlab-tui export`: TensorBoard event files read back with TensorBoard's own reader, and CSV, hold
exactly the log's values."""

import csv
import gzip
import math
import os
import struct
import subprocess
import sys

import pytest

from engine import export as export_module
from engine.config import ROOT
from engine.logs import read_log
from engine.export import Record
from rnnlab_tui.cli import main

CLI = [sys.executable, "-m", "rnnlab_tui"]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A real run: the clipping chapter for two epochs (the norms explode and clipping acts), gzipped."""
    folder = tmp_path_factory.mktemp("run")
    done = subprocess.run(CLI + ["train", "--preset", "clip", "--epochs", "2", "--headless",
                                 "--runs-dir", str(folder / "runs"), "--checkpoint-dir", str(folder / "ckpt")],
                          cwd=folder, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr
    (name,) = os.listdir(folder / "runs")
    return str(folder / "runs" / name)


def expected_values(path):
    """(tag, step) -> value, worked out from the log's events without the exporter."""
    events, bad = read_log(path)
    assert bad == 0
    started = events[0]
    lr = started.config["lr"]
    values = {}
    for event in events:
        if event.type == "settings":
            lr = event.lr
        elif event.type == "step":
            lr = getattr(event, "lr", lr)
            values[("loss/train", event.step)] = event.loss
            for name, norm in event.grad_norms.items():
                values[(f"grad_norm/{name}", event.step)] = norm
            values[("grad_norm/total", event.step)] = event.total_norm
            values[("clip_factor", event.step)] = event.clip_factor
            values[("lr", event.step)] = lr
        elif event.type == "eval":
            values[(f"loss/{event.split}", event.step)] = event.loss
            values[(f"accuracy/{event.split}", event.step)] = event.accuracy
        elif event.type == "flow":
            for name, sigma in event.sigma_max.items():
                values[(f"sigma_max/{name}", event.step)] = sigma
            values[("sigma_max/step_jacobian", event.step)] = event.jacobian_sigma_max
            values[("grad_h/ratio_first_last", event.step)] = event.ratio
        elif event.type == "saturation":  # the SRN has no gates: its hidden units only
            values[("saturation/hidden_above_0.99", event.step)] = event.hidden_saturated
    return values


def as_float32(value):
    return struct.unpack("f", struct.pack("f", value))[0]


def test_every_tensorboard_scalar_is_the_logs_value(log, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["export", log, "--tensorboard", str(tmp_path / "tb")]) == 0
    (run,) = os.listdir(tmp_path / "tb")
    assert log.endswith(run + ".jsonl.gz")
    reader = EventAccumulator(str(tmp_path / "tb" / run), size_guidance={"scalars": 0})
    reader.Reload()
    exported = {(tag, point.step): point.value for tag in reader.Tags()["scalars"] for point in reader.Scalars(tag)}
    expected = expected_values(log)
    assert exported.keys() == expected.keys()
    for key, value in expected.items():  # TensorBoard keeps a scalar as a float32
        assert exported[key] == as_float32(value) or (math.isnan(value) and math.isnan(exported[key])), key
    tags = {tag for tag, _ in exported}
    assert {"grad_norm/W", "grad_norm/U", "grad_norm/b", "grad_norm/total", "loss/train", "accuracy/dev",
            "accuracy/test", "clip_factor", "lr"} <= tags
    assert min(value for (tag, _), value in exported.items() if tag == "clip_factor") < 1  # clipping acted
    assert {"sigma_max/U", "sigma_max/step_jacobian", "saturation/hidden_above_0.99"} <= tags


def test_the_flow_through_time_becomes_one_histogram_per_measured_step(log, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["export", log, "--tensorboard", str(tmp_path)]) == 0
    (run,) = os.listdir(tmp_path)
    reader = EventAccumulator(str(tmp_path / run), size_guidance={"histograms": 0})
    reader.Reload()
    flows = [event for event in read_log(log)[0] if event.type == "flow"]
    histograms = reader.Histograms("grad_h/norm_by_time_step")
    assert flows and [h.step for h in histograms] == [flow.step for flow in flows]
    for histogram, flow in zip(histograms, flows):
        assert list(histogram.histogram_value.bucket) == flow.grad_h_norms
        assert list(histogram.histogram_value.bucket_limit) == [float(t) for t in range(1, 21)]


def test_the_csv_has_one_row_per_step_with_the_logs_values(log, tmp_path):
    path = tmp_path / "run.csv"
    assert main(["export", log, "--csv", str(path)]) == 0
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = [event for event in read_log(log)[0] if event.type == "step"]
    assert [int(row["step"]) for row in rows] == [event.step for event in steps]
    expected = expected_values(log)
    for row in rows:
        for column, text in row.items():
            if (column, int(row["step"])) in expected:
                assert float(text) == expected[(column, int(row["step"]))], column
    assert rows[-1]["accuracy/test"] and rows[-1]["accuracy/dev"]  # both evaluations of the last step


def test_a_profile_over_time_steps_becomes_a_histogram(log, tmp_path, monkeypatch):
    """An instrument with one value per time step is one converter; its values are the buckets."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def flow(event, run):
        return Record(event.step, event.t, profiles={"grad_norm_through_time": [4.0, 2.0, 0.5]})

    monkeypatch.setitem(export_module.CONVERTERS, "eval", flow)
    assert main(["export", log, "--tensorboard", str(tmp_path)]) == 0
    (run,) = os.listdir(tmp_path)
    reader = EventAccumulator(str(tmp_path / run), size_guidance={"histograms": 0})
    reader.Reload()
    (first, *_) = reader.Histograms("grad_norm_through_time")
    assert list(first.histogram_value.bucket) == [4.0, 2.0, 0.5]
    assert list(first.histogram_value.bucket_limit) == [1.0, 2.0, 3.0]


def test_without_tensorboard_one_line_says_how_to_get_it(log, tmp_path):
    # a fresh interpreter in which importing tensorboard fails, as where it is not installed
    script = ("import sys; sys.modules['tensorboard'] = None; from rnnlab_tui.cli import main; "
              "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, "export", log, "--tensorboard", str(tmp_path / "tb")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["rnnlab-tui: TensorBoard export needs the tensorboard package: "
                                        "pip install 'rnnlab-tui[tensorboard]'"]
    assert not (tmp_path / "tb").exists()


def test_an_existing_csv_is_not_overwritten(log, tmp_path, capsys):
    path = tmp_path / "mine.csv"
    path.write_text("my own notes\n")
    assert main(["export", log, "--csv", str(path)]) == 2
    assert path.read_text() == "my own notes\n"
    assert "already exists" in capsys.readouterr().err


def test_an_exported_run_is_not_exported_over(log, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    assert main(["export", log, "--tensorboard", str(tmp_path)]) == 0
    (run,) = os.listdir(tmp_path)
    files = os.listdir(tmp_path / run)
    assert main(["export", log, "--tensorboard", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert os.listdir(tmp_path) == [run] and os.listdir(tmp_path / run) == files


def test_an_export_refused_for_one_target_writes_none(log, tmp_path, capsys):
    """Every target is checked before anything is written: the CSV is not left behind by a refused
    TensorBoard folder, and no message names a temporary file."""
    pytest.importorskip("tensorboard")
    assert main(["export", log, "--tensorboard", str(tmp_path / "tb")]) == 0  # tb/<run> now exists
    capsys.readouterr()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    for target, fragment in ((["--tensorboard", str(tmp_path / "tb")], "already exists"),
                             (["--tensorboard", str(a_file)], "a file, not a folder"),
                             (["--csv", str(tmp_path / "nodir" / "x.csv")], "no folder")):
        table = tmp_path / "run.csv"
        assert main(["export", log, "--csv", str(table), *target]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and fragment in error and ".tmp-" not in error, error
        assert not table.exists() and a_file.read_text() == "mine\n"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "tb"]


def test_a_line_of_the_wrong_types_or_without_a_steps_numbers_is_skipped_as_unreadable(log, tmp_path, capsys):
    path = tmp_path / "typed.jsonl"
    with gzip.open(log, "rt", encoding="utf-8") as handle:  # no row of zeros is made of a bare {"type":"step"}
        path.write_text(handle.read() + '{"type":"step","run":1,"step":"abc","t":"x","loss":"zz"}\n'
                        '{"type":"step"}\n{"type":"step","step":9,"loss":1.5}\n', encoding="utf-8")
    assert main(["export", str(path), "--csv", str(tmp_path / "run.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == f"skipped 3 unreadable lines of {path}" and not captured.err
    with open(tmp_path / "run.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == sum(e.type == "step" for e in read_log(log)[0])


def test_file_names_are_printed_with_their_control_characters_shown(log, tmp_path, capsys):
    cut = tmp_path / "cut\x1b]0;pwned\x07.jsonl.gz"
    whole = open(log, "rb").read()
    cut.write_bytes(whole[: len(whole) // 2])
    table = tmp_path / "r\x1b[31m\x07.csv"
    assert main(["export", str(cut), "--csv", str(table)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("wrote ") and lines[0].endswith(f" steps to {tmp_path}/r␛[31m␇.csv")
    assert lines[1].startswith("skipped ") and lines[1].endswith(f" unreadable lines of {tmp_path}/cut␛]0;pwned␇.jsonl.gz")
    assert table.exists()


@pytest.mark.parametrize("first, fragment", [
    ('"schema":2,"config":"zz"', "run_started field config is not dict: 'zz'"),
    ('"schema":1,"config":{}', "written with event schema 1; this rnnlab-tui reads schema 2"),
])
def test_a_log_whose_first_line_is_unusable_is_refused_as_watch_refuses_it(first, fragment, tmp_path, capsys,
                                                                            monkeypatch):
    from tui.main import watch

    monkeypatch.setattr("tui.main._run", lambda source: pytest.fail("the monitor opened on an unusable log"))
    path = tmp_path / "odd.jsonl"
    path.write_text('{"type":"run_started","run":"x","step":0,"t":0,' + first + '}\n', encoding="utf-8")
    assert main(["export", str(path), "--csv", str(tmp_path / "run.csv")]) == 2
    exported = capsys.readouterr().err
    assert watch(str(path)) == 2
    watched = capsys.readouterr().err
    assert exported == watched and exported.count("\n") == 1 and fragment in exported
    assert not (tmp_path / "run.csv").exists()


@pytest.mark.parametrize("args, fragment", [
    (["export", "nope"], "needs --tensorboard DIR or --csv FILE"),
    (["export", "nope", "--csv", "x.csv"], "nope: no such log file or run"),
    (["export", "/dev/null", "--csv", "x.csv"], "/dev/null: not a file (a device or a pipe)"),
])
def test_bad_export_input_is_one_line(args, fragment, capsys):
    assert main(args) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("run_id, name", [("lstm-digits-1", "lstm-digits-1"), ("../../etc", "_.._etc"),
                                          ("a/b\x1b[2J", "a_b__2J"), ("", "run")])
def test_a_run_id_from_a_log_stays_a_plain_folder_name(run_id, name):
    assert export_module.safe_name(run_id) == name
