"""``sweep --grid``: what a grid trains, and one line with exit 2 for anything that cannot be swept."""

import os
import subprocess
import sys

import pytest

from engine.config import ROOT, build_config
from engine.sweep.grid import GridError, make_jobs, make_spec, parse_axis, spell

CLI = [sys.executable, "-m", "rnnlab_tui"]


def rnnlab(*args, env=None):
    return subprocess.run(CLI + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def test_values_take_the_options_types_and_none_turns_clipping_off():
    assert parse_axis("lr=0.05,0.2") == ("lr", [0.05, 0.2])
    assert parse_axis("clip=none,20,5,1") == ("clip", [None, 20.0, 5.0, 1.0])
    assert parse_axis("clip-type=1,inf") == ("clip_type", ["1", "inf"])
    assert parse_axis("hidden=16,64") == ("hidden", [16, 64])
    assert parse_axis("shuffle=true,no") == ("shuffle", [True, False])


def test_plain_sweep_is_the_memory_experiment():
    spec = make_spec()
    assert spec.preset == "memory" and spec.study == "memory"
    assert spec.axes == {"cell": ["srn", "lstm"], "length": [10, 15, 20, 25, 30, 35]}
    assert spec.seeds == [build_config("memory").seed]


def test_the_stability_study_and_its_grid_spelt_out_train_the_same_runs():
    study = make_jobs(make_spec("stability"), "s")
    spelt = make_jobs(make_spec(preset="explode", grid=["lr=0.05,0.2,0.5,2", "clip=none,20,5,1"]), "s")
    assert len(study) == 16 and [job.config for job in study] == [job.config for job in spelt]
    configs = {(job.point["lr"], job.point["clip"]): job.config for job in study}
    assert configs[(0.2, None)].clip is None and configs[(0.5, 5.0)].clip == 5.0
    assert configs[(2.0, 1.0)].lr == 2.0 and configs[(2.0, 1.0)].preset == "explode"
    assert configs[(0.2, None)].run_id == "s-lr0.2-clipnone"


def test_a_grid_axis_replaces_the_studys_axis_of_its_key_and_others_are_added():
    spec = make_spec(grid=["length=10,15", "hidden=16,32"], seeds=2)
    assert spec.axes == {"cell": ["srn", "lstm"], "length": [10, 15], "hidden": [16, 32]}
    jobs = make_jobs(spec, "s")
    assert len(jobs) == 2 * 2 * 2 * 2 and len({job.config.run_id for job in jobs}) == len(jobs)
    assert {job.config.seed for job in jobs} == {5, 6} and jobs[-1].config.run_id == "s-lstm-L15-hidden32-s6"


def test_values_that_round_alike_get_names_that_tell_them_apart():
    jobs = make_jobs(make_spec(preset="explode", grid=["lr=0.1234561,0.1234562", "clip=none,20"]), "s")
    assert [job.config.run_id for job in jobs] == ["s-lr0.1234561-clipnone", "s-lr0.1234561-clip20",
                                                   "s-lr0.1234562-clipnone", "s-lr0.1234562-clip20"]
    assert spell(0.1234562) == "0.1234562" and spell(0.2) == "0.2" and spell(2.0) == "2" and spell(1e-5) == "1e-05"


def test_two_points_that_would_share_a_run_name_are_refused():
    with pytest.raises(GridError, match="points corpus=a b and corpus=a_b would share the run name corpusa_b"):
        make_jobs(make_spec(preset="lm-timemachine", grid=["corpus=a b,a_b"]), "s")


def test_another_preset_starts_from_no_axes():
    spec = make_spec(preset="clip", grid=["seed=1,2,3"])
    assert spec.axes == {"seed": [1, 2, 3]}
    assert [job.config.seed for job in make_jobs(spec, "s")] == [1, 2, 3]
    assert len(make_jobs(make_spec(preset="explode"), "s")) == 1  # even a study's preset, given alone
    assert make_spec(preset="memory").axes == make_spec().axes  # the memory study's, as by default


def test_the_help_says_what_preset_alone_trains():
    help_text = " ".join(rnnlab("sweep", "--help").stdout.split())
    assert "alone it trains one run of the preset (--preset memory: the memory study), --grid adds axes" in help_text
    assert "Without --study or --preset: the memory experiment" in help_text


@pytest.mark.parametrize("text, fragment", [
    ("foo=1", "unknown option 'foo'"),
    ("lr=fast", "'fast' is not a number"),
    ("hidden=1.5", "'1.5' is not a whole number"),
    ("clip=off,nan", "'nan' is not a number or none"),
    ("lr", "--grid wants KEY=V1,V2"),
    ("lr=", "--grid lr: no values"),
    ("lr=0.1,0.1", "given twice"),
])
def test_a_bad_axis_says_what_is_wrong(text, fragment):
    with pytest.raises(GridError, match=fragment):
        make_spec(grid=[text])


def test_a_bad_point_is_named():
    with pytest.raises(GridError, match="point cell=srn length=10 lr=-1.0: --lr must be a positive"):
        make_jobs(make_spec(grid=["lr=0.1,-1"]), "s")


@pytest.mark.parametrize("args, fragment", [
    (["--grid", "colour=red"], "--grid: unknown option 'colour'"),
    (["--grid", "lr=0.1,abc"], "--grid lr: 'abc' is not a number"),
    (["--grid", "lr=0.1,,0.2", "--epochs", "1", "--cells", "srn", "--lengths", "10"],
     "--grid lr: an empty value in '0.1,,0.2'"),
    (["--grid", "length=7"], "--grid point cell=srn length=7: --length must be one of"),
    (["--preset", "explode", "--grid", "clip=none,-5"], "--clip must be a positive max_norm"),
    (["--grid", "lr=0.1", "--grid", "lr=0.2"], "--grid lr is given twice"),
    (["--lengths", "10", "--grid", "length=15"], "--grid length is given twice"),
    (["--study", "stability", "--preset", "clip"], "give --study or --preset"),
    (["--grid", "seed=1,2", "--seeds", "2"], "not both"),
    (["--grid", "epochs=1,2", "--epochs", "3"], "--epochs N or as --grid epochs=..., not both"),
    (["--preset", "nope"], "--preset must be one of"),
    (["--address", "127.0.0.1:1"], "--address is for --backend ray"),
    (["--backend", "ray", "--sequential"], "--sequential is for the local backend"),
    (["--workers", "999"], "--workers must be 0 (one per core) up to 256"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_the_command_answers_a_bad_grid_with_one_line_and_exit_2(args, fragment):
    done = rnnlab("sweep", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr
    assert fragment in done.stderr and done.stdout == ""


def test_without_ray_the_ray_backend_says_how_to_get_it(tmp_path):
    (tmp_path / "ray").mkdir()  # a ray that cannot be imported, as on a machine without the extra
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    done = rnnlab("sweep", "--backend", "ray", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert done.returncode == 2
    assert done.stderr == "rnnlab-tui: --backend ray needs Ray, an optional extra: pip install 'rnnlab-tui[ray]'\n"


def test_the_stability_map_puts_each_runs_first_explosion_and_accuracy_in_its_cell():
    from rich.console import Console

    from engine.sweep.state import Sweep
    from engine.sweep.table import map_table, stability_charts

    spec = make_spec("stability")
    jobs = make_jobs(spec, "s")
    sweep = Sweep(spec, jobs, "s", {"backend": "local", "impl": "auto", "workers": 2, "sequential": False,
                                    "threads": 1, "epochs": 50, "runs_dir": "runs"})
    for job in jobs:  # the runs at lr 2 and the unclipped ones explode, at a step of their own
        exploded = job.point["lr"] == 2.0 or job.point["clip"] is None
        sweep.apply("started", job.key, {"pid": 1})
        sweep.apply("progress", job.key, {"exploded": exploded, "max_grad_norm": 1e6 if exploded else 10.0,
                                          "first_explosion_step": job.key + 1 if exploded else None})
        sweep.apply("done", job.key, {"state": "finished", "test_accuracy": 0.25 if exploded else 0.5})
    report = sweep.report()
    cells = {(row["lr"], cell["clip"]): cell for row in report["stability_map"] for cell in row["thresholds"]}
    assert cells[(0.2, None)] == {"clip": None, "n": 1, "exploded": 1, "first_explosion_step": 5,
                                  "mean_test_accuracy": 0.25}
    assert cells[(0.2, 20.0)]["exploded"] == 0 and cells[(2.0, 1.0)]["first_explosion_step"] == 16
    console = Console(record=True, width=80)
    console.print(map_table(report))
    rows = [line for line in console.export_text().splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in rows] == ["0.05", "0.2", "0.5", "2"]
    assert [cell.strip() for cell in rows[1].split("│")[2:6]] == ["5 · 0.250", "- · 0.500", "- · 0.500", "- · 0.500"]
    assert [cell.strip() for cell in rows[3].split("│")[2:6]] == ["13 · 0.250", "14 · 0.250", "15 · 0.250",
                                                                  "16 · 0.250"]
    charts = stability_charts(report)
    assert "max_norm" in charts and "x = the run exploded" in charts and "o── none" in charts


def test_the_memory_chart_keeps_every_cell_visible_where_their_accuracies_meet():
    from engine.sweep.state import Sweep
    from engine.sweep.table import memory_chart

    spec = make_spec(grid=["cell=srn,lstm,gru", "length=10,20,30"])
    jobs = make_jobs(spec, "m")
    sweep = Sweep(spec, jobs, "m", {"backend": "local", "impl": "auto", "workers": 2, "sequential": False,
                                    "threads": 1, "epochs": 1, "runs_dir": "runs"})
    for job in jobs:  # every cell at chance: the three lines lie on one another
        sweep.apply("started", job.key, {"pid": 1})
        sweep.apply("done", job.key, {"state": "finished", "test_accuracy": 0.1})
    lines = memory_chart(sweep.report()).splitlines()
    legend = [line.split("│")[-1].strip() for line in lines if line.rstrip().endswith(("srn", "lstm", "gru"))]
    assert legend == ["o── srn", "+── lstm", "*── gru"]  # beside the plot, each cell's marker
    plots = [line[5:line.rindex("│")] for line in lines if line[4:5] in ("│", "┤")]  # inside the frame
    plot = next(line for line in plots if "o" in line)  # the row at 0.1
    assert [plot.count(marker) for marker in "o+*"] == [3, 3, 3]  # one of each cell at each length
