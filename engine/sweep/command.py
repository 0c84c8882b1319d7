"""The ``sweep`` command: the options checked (one line and exit 2 when wrong), the live table on
standard error, then on standard output the final table, the study's map and charts and where the
results are. Exit status: 0, 1 when a run failed, 130 after Ctrl-C."""

from __future__ import annotations

import signal
import sys
import time

from ..config import CELLS, DIGIT_LENGTHS, ConfigError
from ..preflight import check_folder
from ..text import visible
from .grid import make_spec
from .run import execute, plan
from .state import Sweep
from .table import HEADINGS, live_table, map_table, memory_chart, spell, stability_charts

REFRESH_S = 0.25
MAX_WORKERS = 256  # worker processes at most: each holds its own torch (some 300 MB)


def _grid(args) -> list[str]:
    """``--grid`` with ``--cells``/``--lengths`` as the shorthands they are (checked as themselves)."""
    grid = list(args.grid or [])
    if args.cells is not None:
        if not args.cells.strip() or any(cell.strip() not in CELLS for cell in args.cells.split(",")):
            raise ConfigError(f"--cells must name cells from {', '.join(CELLS)}, not {args.cells!r}")
        grid.append(f"cell={args.cells}")
    if args.lengths is not None:
        lengths = [length.strip() for length in args.lengths.split(",")]
        if not args.lengths.strip() or any(length not in map(str, DIGIT_LENGTHS) for length in lengths):
            raise ConfigError(f"--lengths must be among {', '.join(map(str, DIGIT_LENGTHS))}, not {args.lengths!r}")
        grid.append(f"length={args.lengths}")
    return grid


def _plan(args) -> Sweep:
    if args.address and args.backend != "ray":
        raise ConfigError("--address is for --backend ray")
    if args.backend == "ray":
        if args.sequential:
            raise ConfigError("--sequential is for the local backend")
        if args.address and args.workers:
            raise ConfigError("--workers sizes a local Ray cluster; a cluster at --address has its own CPUs")
        from .on_ray import import_ray

        import_ray()  # without Ray: how to get it, before anything starts
    if not 0 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be 0 (one per core) up to {MAX_WORKERS}, not {args.workers}")
    spec = make_spec(args.study, args.preset, _grid(args), seeds=args.seeds, epochs=args.epochs)
    sweep = plan(spec, backend=args.backend, address=args.address or "", workers=args.workers, impl=args.impl,
                 sequential=args.sequential, runs_dir=args.runs_dir, checkpoint_dir=args.checkpoint_dir)
    check_folder(args.runs_dir, "--runs-dir")
    check_folder(args.checkpoint_dir)
    return sweep


def _run_live(sweep: Sweep) -> dict:
    from rich.console import Console
    from rich.live import Live

    live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True)
    last = [0.0]

    def update(sweep: Sweep) -> None:
        now = time.monotonic()
        if now - last[0] >= REFRESH_S:
            last[0] = now
            live.update(live_table(sweep))

    with live:
        return execute(sweep, on_update=update)


def _point(row: dict, report: dict) -> str:
    words = [f"{HEADINGS.get(key, key)}={spell(row[key])}" for key in report["grid"]]
    if len(report["seeds"]) > 1:
        words.append(f"seed {row['seed']}")
    return " ".join(words) or f"seed {row['seed']}"


def _print_results(sweep: Sweep, report: dict) -> None:
    from rich.console import Console

    # into a file or a pipe the tables keep every column whole (rich would fit them to 80 columns and
    # cut the names that tie a row to its log)
    out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
    out.print(live_table(sweep, elapsed=report["wall_s"]))
    finished = any(r["state"] == "finished" for r in report["runs"])
    if "stability_map" in report:
        out.print(map_table(report))
        if finished:
            print(stability_charts(report), flush=True)
    if "lstm_above_srn_for_L_ge_15" in report and finished:
        print(memory_chart(report), flush=True)
        verdict = report["lstm_above_srn_for_L_ge_15"]
        if verdict is not None:
            out.print(f"LSTM above SRN for every L >= 15: {'yes' if verdict else 'no'}")
    files = [report[name] for name in ("json", "csv", "means_csv") if name in report]
    startup = f"; Ray start-up {report['backend_startup_s']:.1f} s" if report["backend"] == "ray" else ""
    # the paths are under the user's --runs-dir: printed as they are (no rich markup), control characters shown
    print(visible(f"wall time {report['wall_s']:.1f} s{startup}; results: {', '.join(files[:-1])} and {files[-1]}"),
          flush=True)


def main(args) -> int:
    try:
        sweep = _plan(args)
    except ConfigError as error:
        print(f"rnnlab-tui: {visible(error)}", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM (a scheduler, timeout) stop the sweep: runs stopped, results written, 130;
    # also when started where SIGINT is ignored (a script's background job), as `train` is
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    report = _run_live(sweep)
    _print_results(sweep, report)
    failed = [r for r in report["runs"] if r["state"] == "failed"]
    for row in failed:
        print(visible(f"rnnlab-tui: {_point(row, report)} failed: {row['error']}"), file=sys.stderr)
    if report["interrupted"]:
        return 130
    return 1 if failed else 0
