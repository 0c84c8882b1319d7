"""What the sweep prints: the live table's header and rows, from a sweep fed its workers' messages."""

from rich.console import Console

from engine.sweep.grid import make_jobs, make_spec
from engine.sweep.state import Sweep
from engine.sweep.table import live_table


def sweep_of(spec, workers=2, sequential=False, runs_dir="runs") -> Sweep:
    options = {"backend": "local", "impl": "auto", "workers": workers, "sequential": sequential, "threads": 1,
               "epochs": 1, "runs_dir": runs_dir}
    return Sweep(spec, make_jobs(spec, "s", runs_dir=runs_dir), "s", options)


def shown(renderable, width=200) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_header_shows_a_folders_control_characters_and_never_sends_them():
    sweep = sweep_of(make_spec(preset="explode"), runs_dir="rd\x1b[31mx")
    text = shown(live_table(sweep, elapsed=1.0))
    assert "\x1b" not in text and "logs rd␛[31mx/s-<log>" in text


def test_the_header_counts_one_worker_in_the_singular():
    assert "auto, 1 worker, 1 s" in shown(live_table(sweep_of(make_spec(preset="explode"), workers=1), elapsed=1.0))
    assert "auto, 2 workers, 1 s" in shown(live_table(sweep_of(make_spec(preset="explode"), workers=2), elapsed=1.0))


def test_a_language_model_sweep_reports_its_test_perplexity_under_headings_that_say_so(tmp_path):
    import csv

    from engine import events as ev
    from engine.sweep.job import Progress
    from engine.sweep.results import write_results

    for seeds in (1, 2):
        sweep = sweep_of(make_spec(preset="lm-timemachine", grid=["hidden=8,16"], seeds=seeds))
        for key in sweep.jobs:
            sweep.apply("started", key, {"pid": 1})
            Progress(lambda kind, **fields: sweep.apply(kind, key, fields))(
                ev.RunFinished(step=10, best_dev=9.5, test_perplexity=9.25 + key))
            sweep.apply("done", key, {"state": "finished"})
        report = sweep.report()
        assert report["score"] == "perplexity" and report["runs"][0]["test_perplexity"] == 9.25
        assert report["means"][0]["mean_test_perplexity"] == (9.25 if seeds == 1 else 9.75)
        text = shown(live_table(sweep, elapsed=1.0))
        headings = ["best dev ppl", "test ppl", "9.500", "9.250"] if seeds == 1 else ["mean ppl", "9.750"]
        assert all(heading in text for heading in headings) and " acc" not in text
        paths = write_results(report, str(tmp_path / f"seeds{seeds}"))
        with open(paths["csv"], encoding="utf-8") as handle:
            assert next(csv.DictReader(handle))["test_perplexity"] == "9.25"
    with open(paths["means_csv"], encoding="utf-8") as handle:
        assert next(csv.DictReader(handle))["mean_test_perplexity"] == "9.75"


def test_a_finished_run_reports_its_last_steps_epoch_and_loss():
    from engine import events as ev
    from engine.sweep.job import Progress

    sweep = sweep_of(make_spec(preset="explode", grid=["lr=0.1,0.2"]))
    progress = Progress(lambda kind, **fields: sweep.apply(kind, 0, fields))
    sweep.apply("started", 0, {"pid": 1})
    for step in range(1, 7):  # faster than progress messages go: only the first step is sent on its own
        progress(ev.Step(step=step, epoch=1 + (step - 1) // 2, loss=1.0 / step, total_norm=1.0))
    progress(ev.RunFinished(step=6, test_accuracy=0.5))
    sweep.apply("done", 0, {"state": "finished"})
    run = sweep.report()["runs"][0]
    assert (run["epoch"], run["loss"]) == (3, 1.0 / 6)
    assert sweep.report()["runs"][1]["epoch"] is None  # never started: no epoch yet


def test_after_a_stop_the_runs_that_never_started_are_cancelled_with_blank_results(tmp_path):
    import csv

    from engine.sweep.results import write_results

    sweep = sweep_of(make_spec(preset="explode", grid=["lr=0.1,0.2,0.5"]))
    sweep.apply("started", 0, {"pid": 1})
    sweep.apply("done", 0, {"state": "finished", "test_accuracy": 0.5})
    sweep.apply("started", 1, {"pid": 1})
    sweep.interrupted = True
    sweep.finish()
    report = sweep.report()
    assert [run["state"] for run in report["runs"]] == ["finished", "stopped", "cancelled"]
    assert report["runs"][2]["exploded"] is None and report["runs"][2]["error"] == ""
    with open(write_results(report, str(tmp_path))["csv"], encoding="utf-8") as handle:
        cancelled = list(csv.DictReader(handle))[2]
    assert cancelled["state"] == "cancelled" and cancelled["exploded"] == cancelled["test_accuracy"] == ""
    assert "cancelled" in shown(live_table(sweep, elapsed=1.0))


def test_a_stability_map_over_more_axes_says_under_it_which_runs_each_entry_pools():
    from engine.sweep.table import map_table, stability_charts

    sweep = sweep_of(make_spec("stability", grid=["lr=0.2", "clip=none,20", "cell=srn,lstm"]))
    for key, job in sweep.jobs.items():
        sweep.apply("started", key, {"pid": 1})
        sweep.apply("done", key, {"state": "finished", "test_accuracy": 0.5})
    report = sweep.report()
    assert report["stability_map_pools"] == {"cell": ["srn", "lstm"]}
    assert report["stability_map"][0]["thresholds"][0]["n"] == 2
    assert "each entry pools the runs of cell = srn, lstm" in shown(map_table(report))
    assert "each point pools the runs of cell = srn, lstm" in stability_charts(report)
    plain = sweep_of(make_spec("stability", grid=["lr=0.2", "clip=none,20"]))
    plain_report = plain.report()
    assert plain_report["stability_map_pools"] == {} and "pools" not in shown(map_table(plain_report))


def test_results_printed_into_a_file_keep_every_column_whole(tmp_path):
    """Saved with `> out.txt`, a table must still tie each row to its log: rich would fit it to the
    80 columns it assumes for a file and cut the names."""
    import os
    import subprocess
    import sys

    from engine.config import ROOT

    done = subprocess.run([sys.executable, "-m", "rnnlab_tui", "sweep", "--preset", "explode", "--grid",
                           "lr=0.05,0.2", "clip=none,20", "--epochs", "1", "--sequential"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT, "COLUMNS": "60"})
    assert done.returncode == 0, done.stderr
    assert "lr0.05-clipnone.jsonl.gz" in done.stdout and "…" not in done.stdout, done.stdout
