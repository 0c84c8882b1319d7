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
