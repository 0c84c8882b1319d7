"""``rnnlab-tui bench --quick --json`` and small sweeps (one epoch): reports, files, failures."""

import csv
import json
import os
import shutil
import subprocess
import sys

from engine.config import DATA_ROOT, ROOT
from engine.logs import read_log

from engine.sweep.grid import make_spec
from engine.sweep.run import run_sweep

CLI = [sys.executable, "-m", "rnnlab_tui"]


def test_bench_quick_json_has_every_figure():
    done = subprocess.run(CLI + ["bench", "--quick", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"cells", "monitoring", "ingest", "generation", "machine"} <= set(report)
    cases = {(row["cell"], row["batch"]) for row in report["cells"]}
    assert cases == {(cell, batch) for cell in ("srn", "lstm", "gru") for batch in (8, 64)}
    for row in report["cells"]:
        for key in ("torch_ms", "scratch_ms", "naive_ms", "scratch_over_torch", "naive_over_torch"):
            assert row[key] > 0
        assert row["max_relative_difference"] < 1e-5
    for preset in ("explode", "memory"):
        figures = report["monitoring"][preset]
        runs, steps = figures["whole_runs"], figures["interleaved"]
        for mode in ("bare", "monitored", "watching"):
            assert runs[f"{mode}_steps_per_s"] > 0 and steps[f"{mode}_us_per_step"] > 0
        for ratio in ("monitored_over_bare", "watching_over_bare"):
            assert figures[ratio] == steps[ratio] > 0 and runs[ratio] > 0
        assert all(value > 0 for value in steps["ratio_of_totals"].values())


def test_tiny_sweep_writes_json_and_csv_with_one_row_per_run(tmp_path):
    done = subprocess.run(CLI + ["sweep", "--epochs", "1", "--lengths", "10,15", "--workers", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr
    runs = tmp_path / "runs"
    (json_path,) = runs.glob("sweep-*.json")
    report = json.loads(json_path.read_text())
    assert report["workers"] == 2 and report["complete"] and report["wall_s"] > 0
    assert sorted((r["cell"], r["length"]) for r in report["runs"]) == [
        ("lstm", 10), ("lstm", 15), ("srn", 10), ("srn", 15)]
    assert all(r["state"] == "finished" and 0 <= r["test_accuracy"] <= 1 for r in report["runs"])
    with open(json_path.with_suffix(".csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in report["runs"]:  # every worker's log is an ordinary run log, compressed once it finished
        assert row["log"].endswith(".jsonl.gz")
        events, bad = read_log(str(tmp_path / row["log"]))
        assert bad == 0 and events[0].type == "run_started" and events[-1].type == "run_finished"
    assert "wall time" in done.stdout


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    data = tmp_path / "data" / "digits"
    shutil.copytree(os.path.join(DATA_ROOT, "digits", "10"), data / "10")
    (data / "15").mkdir()
    (data / "15" / "train.txt").write_text("this is not a digit line\n")
    spec = make_spec(grid=["cell=srn", "length=10,15"], epochs=1)
    report = run_sweep(spec, workers=2, runs_dir=str(tmp_path / "runs"),
                       checkpoint_dir=str(tmp_path / "checkpoints"), data_dir=str(tmp_path / "data"))
    states = {r["length"]: r for r in report["runs"]}
    assert states[10]["state"] == "finished" and states[10]["test_accuracy"] is not None
    assert states[15]["state"] == "failed" and "train.txt" in states[15]["error"]
    assert not report["complete"]
    assert json.loads(open(report["json"]).read())["runs"][1]["state"] == "failed"
