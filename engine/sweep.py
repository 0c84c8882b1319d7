"""``rnnlab-tui sweep``: the memory experiment (NNDL 6.3) in parallel worker processes.

Every (cell, length, seed) is one ordinary run of the ``memory`` preset (Adam 1e-3, batch 8, 500
epochs, L1 clip 5, evaluate every 100 steps, best-dev checkpoint, test accuracy), trained by
``session.run_session`` with its own log under ``runs/`` (so ``rnnlab-tui watch runs/<log>`` opens
it). A fixed pool of spawned worker processes takes the runs from a queue, one torch thread each by
default; they report progress to this process through a second queue, which drives a live table.
At the end: the table, an accuracy-vs-length chart, and ``runs/sweep-<id>.json`` and ``.csv``
(written also when a run fails or Ctrl-C stops the sweep, with what finished).

``--seeds N`` trains every (cell, length) N times, with the preset's seed and the N-1 after it, as
separate jobs of the same pool (run ids end in ``-s<seed>``). The tables, the chart and the LSTM-vs-SRN
conclusion then use the mean test accuracy of each (cell, length) over its finished runs, shown with
the spread (min-max) and n; the JSON keeps every run and adds the means, which also go to
``sweep-<id>-means.csv``. One seed failing leaves the mean of the others.

``--sequential`` runs the same jobs one after another in this process; with ``--impl naive`` (the
textbook's cells) that is the baseline the parallel sweep is measured against.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import queue as queue_module
import sys
import time
from dataclasses import replace

from .config import CELLS, DIGIT_LENGTHS, ConfigError, build_config

PROGRESS_EVERY = 0.5  # seconds between two progress messages of one worker
MAX_WORKERS = 256  # worker processes at most: each holds its own torch (some 300 MB)


# --- one run, in a worker or in this process ----------------------------------


# ``--impl auto``: the faster of two implementations of the same function, per cell (bench: the
# scratch SRN runs in about 0.6x the time of PyTorch's CPU RNN; PyTorch's fused LSTM beats scratch).
FASTEST_IMPL = {"srn": "scratch", "lstm": "torch", "gru": "torch"}


def _make_config(cell: str, length: int, seed: int, sweep_id: str, options: dict):
    impl = options["impl"]
    if impl == "auto":
        impl = FASTEST_IMPL[cell]
    run_id = f"{sweep_id}-{cell}-L{length}" + (f"-s{seed}" if len(options["seeds"]) > 1 else "")
    config = build_config("memory", cell=cell, length=length, seed=seed, epochs=options.get("epochs"),
                          impl="scratch" if impl == "naive" else impl, runs_dir=options["runs_dir"],
                          checkpoint_dir=options["checkpoint_dir"], data_dir=options.get("data_dir") or None,
                          run_id=run_id)
    return replace(config, impl=impl) if impl == "naive" else config


def _run_job(job: tuple[str, int, int], sweep_id: str, options: dict, report) -> str:
    """Train one (cell, length, seed); ``report(kind, **fields)`` carries progress. Returns the reason."""
    from . import events as ev
    from .session import log_path_for, run_session

    cell, length, seed = job
    config = _make_config(cell, length, seed, sweep_id, options)
    report("started", log=log_path_for(config))
    last = [0.0]

    def on_event(event) -> None:
        if isinstance(event, ev.RunStarted):
            report("progress", step=0, total=event.total_steps)
        elif isinstance(event, ev.Step):
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                report("progress", step=event.step, epoch=event.epoch, loss=event.loss)
        elif isinstance(event, ev.Eval):
            if event.split == "dev":
                report("progress", step=event.step, best_dev=event.best)
            else:
                report("progress", test_accuracy=event.accuracy)

    started = time.monotonic()
    reason, log = run_session(config, callbacks=[on_event])
    report("done", state="finished" if reason == "finished" else "stopped", wall_s=time.monotonic() - started,
           log=log)
    return reason


def _worker(jobs, messages, sweep_id: str, options: dict, threads: int) -> None:
    """A worker process: take jobs until there are none (or Ctrl-C), report everything."""
    import torch

    torch.set_num_threads(threads)
    try:
        while True:
            job = jobs.get()
            if job is None:
                return

            def report(kind, **fields):
                messages.put((kind, job, fields))

            try:
                reason = _run_job(job, sweep_id, options, report)
            except KeyboardInterrupt:
                report("done", state="stopped")
                return
            except Exception as error:  # this run failed; the worker goes on with the next
                from .errors import describe

                report("done", state="failed", error=describe(error))
                continue
            if reason == "stopped":  # Ctrl-C: the sweep is being stopped
                return
    except KeyboardInterrupt:
        return


# --- the sweep ---------------------------------------------------------------


class Sweep:
    """The state of all runs, updated from the workers' messages."""

    def __init__(self, jobs, sweep_id: str, options: dict):
        self.id, self.options = sweep_id, options
        self.rows = {job: {"cell": job[0], "length": job[1], "seed": job[2], "state": "queued", "step": 0,
                           "total": 0, "best_dev": None, "test_accuracy": None, "wall_s": None, "log": "",
                           "error": ""}
                     for job in jobs}
        self.started = time.monotonic()
        self.wall_s = 0.0
        self.interrupted = False
        self.paths: dict[str, str] = {}  # json, csv once written

    def apply(self, kind: str, job, fields: dict) -> None:
        row = self.rows[tuple(job)]
        if kind == "started":
            row.update(state="running", log=fields.get("log", ""))
        elif kind == "progress":
            row.update({key: value for key, value in fields.items() if value is not None})
        elif kind == "done":
            row.update(fields)
            if row["state"] == "finished":
                row["step"] = row["total"]

    def pending(self) -> list:
        return [job for job, row in self.rows.items() if row["state"] in ("queued", "running")]

    def report(self) -> dict:
        runs = [dict(row) for row in self.rows.values()]
        return {"sweep": self.id, "impl": self.options["impl"], "workers": self.options["workers"],
                "sequential": self.options["sequential"], "threads_per_worker": self.options["threads"],
                "epochs": self.options.get("epochs") or 500, "cells": sorted({r["cell"] for r in runs}),
                "lengths": sorted({r["length"] for r in runs}), "seeds": self.options["seeds"],
                "wall_s": round(self.wall_s, 3), "complete": all(r["state"] == "finished" for r in runs),
                "interrupted": self.interrupted, "lstm_above_srn_for_L_ge_15": lstm_above_srn(runs),
                "runs": runs, "means": seed_means(runs), **self.paths}


def seed_means(runs: list[dict]) -> list[dict]:
    """Per (cell, length), in run order: test accuracy over its finished seeds (mean, min, max, n)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["cell"], run["length"]), []).append(run)
    means = []
    for (cell, length), members in groups.items():
        accuracies = [r["test_accuracy"] for r in members
                      if r["state"] == "finished" and r["test_accuracy"] is not None]
        means.append({"cell": cell, "length": length, "seeds": [r.get("seed") for r in members],
                      "n": len(accuracies),
                      "mean_test_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
                      "min_test_accuracy": min(accuracies, default=None),
                      "max_test_accuracy": max(accuracies, default=None),
                      "failed_seeds": [r.get("seed") for r in members if r["state"] == "failed"]})
    return means


def lstm_above_srn(runs: list[dict]):
    """The textbook's conclusion: LSTM's mean test accuracy above SRN's at every L >= 15 (None: not
    measured). With one seed the mean is that run's accuracy."""
    accuracy = {(m["cell"], m["length"]): m["mean_test_accuracy"] for m in seed_means(runs)}
    lengths = sorted({length for cell, length in accuracy if length >= 15})
    pairs = [(accuracy.get(("lstm", n)), accuracy.get(("srn", n))) for n in lengths]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    return all(a > b for a, b in pairs) if pairs else None


def run_sweep(cells, lengths, *, seeds: int = 1, workers: int = 0, epochs: int | None = None,
              impl: str = "auto", sequential: bool = False, runs_dir: str = "runs",
              checkpoint_dir: str = "checkpoints", data_dir: str = "", on_update=None) -> dict:
    """Run the sweep, write runs/sweep-<id>.json and .csv, return the report (also on Ctrl-C)."""
    base = build_config("memory").seed  # the preset's seed: one seed reproduces a plain memory run
    seed_list = list(range(base, base + seeds))
    jobs = [(cell, int(length), seed) for cell in cells for length in lengths for seed in seed_list]
    cores = os.cpu_count() or 1
    workers = 1 if sequential else max(1, min(workers or cores, len(jobs)))
    # One torch thread per process: these models are too small for intra-op threads to pay (their
    # operations stay under PyTorch's parallel grain), and on a busy machine idle threads spin. With
    # fewer workers than cores the spare cores go to the workers.
    threads = max(1, cores // workers) if not sequential else 1
    sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 100000:05d}"
    options = {"impl": impl, "epochs": epochs, "runs_dir": runs_dir, "checkpoint_dir": checkpoint_dir,
               "data_dir": data_dir, "workers": workers, "sequential": sequential, "threads": threads,
               "seeds": seed_list}
    for cell, length, seed in jobs:  # a bad option ends here, before any process starts
        _make_config(cell, length, seed, sweep_id, options)
    sweep = Sweep(jobs, sweep_id, options)
    update = on_update or (lambda sweep: None)
    try:
        if sequential:
            _run_here(sweep, jobs, options, threads, update)
        else:
            _run_pool(sweep, jobs, options, workers, threads, update)
    finally:
        sweep.wall_s = time.monotonic() - sweep.started
        for row in sweep.rows.values():
            if row["state"] in ("queued", "running"):
                row["state"] = "stopped" if sweep.interrupted else "failed"
        sweep.paths = write_results(sweep.report(), runs_dir)
        update(sweep)
    return sweep.report()


def _run_here(sweep: Sweep, jobs, options, threads, update) -> None:
    import torch

    torch.set_num_threads(threads)
    for job in jobs:
        def report(kind, **fields):
            sweep.apply(kind, job, fields)
            update(sweep)

        try:
            reason = _run_job(job, sweep.id, options, report)
        except KeyboardInterrupt:
            sweep.interrupted = True
            report("done", state="stopped")
            return
        except Exception as error:
            from .errors import describe

            report("done", state="failed", error=describe(error))
            continue
        if reason == "stopped":
            sweep.interrupted = True
            return


def _run_pool(sweep: Sweep, jobs, options, workers: int, threads: int, update) -> None:
    context = multiprocessing.get_context("spawn")
    job_queue, messages = context.Queue(), context.Queue()
    for job in jobs:
        job_queue.put(job)
    for _ in range(workers):
        job_queue.put(None)
    processes = [context.Process(target=_worker, args=(job_queue, messages, sweep.id, options, threads),
                                 name=f"sweep-worker-{index}", daemon=True) for index in range(workers)]
    for process in processes:
        process.start()
    deadline = None  # after Ctrl-C: when to give up waiting for the workers to stop
    while True:
        try:
            try:
                kind, job, fields = messages.get(timeout=0.2)
                sweep.apply(kind, job, fields)
                while True:  # take everything queued before redrawing
                    kind, job, fields = messages.get_nowait()
                    sweep.apply(kind, job, fields)
            except queue_module.Empty:
                pass
            update(sweep)
            if not any(process.is_alive() for process in processes):
                _drain(messages, sweep)
                break
            if deadline is not None and time.monotonic() > deadline:
                break
        except KeyboardInterrupt:
            if sweep.interrupted:  # a second Ctrl-C: stop waiting
                break
            # The workers got the same SIGINT: each stops its run at a step boundary, keeping its log
            # and last checkpoint. Queued runs are not started.
            sweep.interrupted = True
            deadline = time.monotonic() + 30.0
    for process in processes:
        process.join(timeout=1.0)
        if process.is_alive():
            process.terminate()
    for job, row in sweep.rows.items():  # a worker that died without a word
        if row["state"] == "running" and not sweep.interrupted:
            row.update(state="failed", error=row["error"] or "the worker process ended unexpectedly")


def _drain(messages, sweep: Sweep) -> None:
    while True:
        try:
            kind, job, fields = messages.get(timeout=0.05)
        except (queue_module.Empty, OSError, EOFError):
            return
        sweep.apply(kind, job, fields)


def write_results(report: dict, runs_dir: str) -> dict[str, str]:
    """runs/<sweep>.json, .csv (one row per run) and, with several seeds, -means.csv. Returns the paths."""
    os.makedirs(runs_dir, exist_ok=True)
    base = os.path.join(runs_dir, report["sweep"])
    paths = {"json": base + ".json", "csv": base + ".csv"}
    with open(paths["json"] + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    os.replace(paths["json"] + ".tmp", paths["json"])
    columns = ["cell", "length", "seed", "state", "test_accuracy", "best_dev", "step", "total", "wall_s", "log",
               "error"]
    _write_csv(paths["csv"], columns, report["runs"])
    if len(report["seeds"]) > 1:
        paths["means_csv"] = base + "-means.csv"
        columns = ["cell", "length", "n", "mean_test_accuracy", "min_test_accuracy", "max_test_accuracy",
                   "seeds", "failed_seeds"]
        rows = [{**m, "seeds": " ".join(map(str, m["seeds"])), "failed_seeds": " ".join(map(str, m["failed_seeds"]))}
                for m in report["means"]]
        _write_csv(paths["means_csv"], columns, rows)
    return paths


def _write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
    with open(path + ".tmp", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


# --- the command -------------------------------------------------------------


def _table(sweep: Sweep):
    from rich.table import Table

    elapsed = time.monotonic() - sweep.started
    seeds = sweep.options["seeds"]
    table = Table(title=f"{sweep.id}  ({sweep.options['impl']}, "
                        f"{'sequential' if sweep.options['sequential'] else str(sweep.options['workers']) + ' workers'}, "
                        + (f"seeds {seeds[0]}-{seeds[-1]}, " if len(seeds) > 1 else "") + f"{elapsed:.0f} s)")
    if len(seeds) > 1:
        return _mean_table(sweep, table)
    for column in ("cell", "L", "state", "progress", "best dev", "test acc", "time", "log"):
        table.add_column(column, justify="right" if column in ("L", "best dev", "test acc", "time") else "left")
    for row in sweep.rows.values():
        total = row["total"] or 0
        progress = f"{row['step']}/{total}" if total else "-"
        state = row["state"] if not row["error"] else f"{row['state']}: {row['error'][:60]}"
        table.add_row(row["cell"], str(row["length"]), state, progress, _fmt(row["best_dev"]),
                      _fmt(row["test_accuracy"]), f"{row['wall_s']:.0f} s" if row["wall_s"] else "",
                      os.path.basename(row["log"]))
    return table


def _mean_table(sweep: Sweep, table):
    """One row per (cell, length): the mean test accuracy over the seeds finished so far. Fewer
    columns than the per-run table (no best dev, no log: they are in the JSON) so that it fits 80."""
    for column in ("cell", "L", "state", "progress", "mean acc", "spread", "n", "time/run"):
        table.add_column(column, justify="left" if column in ("cell", "state", "progress") else "right")
    groups: dict[tuple, list[dict]] = {}
    for row in sweep.rows.values():
        groups.setdefault((row["cell"], row["length"]), []).append(row)
    means = {(m["cell"], m["length"]): m for m in seed_means(list(sweep.rows.values()))}
    for (cell, length), rows in groups.items():
        mean = means[(cell, length)]
        states = [row["state"] for row in rows]
        counts = [f"{states.count(state)} {state}" for state in ("finished", "running", "queued", "stopped", "failed")
                  if state in states]
        state = states[0] if len(counts) == 1 else ", ".join(counts)
        errors = [row["error"] for row in rows if row["error"]]
        if errors:
            state += f": {errors[0][:60]}"
        total = max(row["total"] or 0 for row in rows)
        progress = f"{sum(row['step'] for row in rows)}/{total * len(rows)}" if total else "-"
        spread = (f"{_fmt(mean['min_test_accuracy'])}–{_fmt(mean['max_test_accuracy'])}"
                  if mean["n"] > 1 else "")
        walls = [row["wall_s"] for row in rows if row["state"] == "finished" and row["wall_s"]]
        table.add_row(cell, str(length), state, progress, _fmt(mean["mean_test_accuracy"]), spread,
                      str(mean["n"]), f"{sum(walls) / len(walls):.0f} s" if walls else "")
    return table


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


def chart(report: dict, width: int = 72, height: int = 18) -> str:
    """Test accuracy against sequence length, one line per cell (plotext, as text)."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    means = seed_means(report["runs"])  # with one seed, each run's own accuracy
    for cell in report["cells"]:
        points = sorted((m["length"], m["mean_test_accuracy"]) for m in means
                        if m["cell"] == cell and m["mean_test_accuracy"] is not None)
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], label=cell, marker="dot")
    seeds = len(report.get("seeds") or [None])
    plt.title("test accuracy vs sequence length" + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))
    plt.xlabel("L")
    plt.ylim(0, 1)
    text = plt.build()
    return text if sys.stdout.isatty() else plt.uncolorize(text)


def _count_problem(args) -> str:
    """What is wrong with --epochs, --workers or --seeds, in one line ("" when nothing)."""
    if args.epochs is not None and args.epochs < 1:
        return f"--epochs must be at least 1, not {args.epochs}"
    if not 0 <= args.workers <= MAX_WORKERS:
        return f"--workers must be 0 (one per core) up to {MAX_WORKERS}, not {args.workers}"
    if args.seeds < 1:
        return f"--seeds must be at least 1, not {args.seeds}"
    return ""


def main(args) -> int:
    from rich.console import Console
    from rich.live import Live

    try:
        cells = [cell.strip() for cell in args.cells.split(",") if cell.strip()]
        lengths = [int(length) for length in args.lengths.split(",") if length.strip()]
    except ValueError:
        print(f"rnnlab-tui: --lengths must be comma-separated numbers, not {args.lengths!r}", file=sys.stderr)
        return 2
    bad = [cell for cell in cells if cell not in CELLS]
    if bad or not cells:
        print(f"rnnlab-tui: --cells must name cells from {', '.join(CELLS)}, not {args.cells!r}", file=sys.stderr)
        return 2
    wrong = [length for length in lengths if length not in DIGIT_LENGTHS]
    if wrong or not lengths:
        print(f"rnnlab-tui: --lengths must be among {', '.join(map(str, DIGIT_LENGTHS))}, not {args.lengths!r}",
              file=sys.stderr)
        return 2
    problem = _count_problem(args)
    if problem:
        print(f"rnnlab-tui: {problem}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    live = Live(console=console, refresh_per_second=4, transient=True)
    last = [0.0]

    def update(sweep: Sweep) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25:
            last[0] = now
            live.update(_table(sweep))

    try:
        with live:
            report = run_sweep(cells, lengths, seeds=args.seeds, workers=args.workers, epochs=args.epochs,
                               impl=args.impl, sequential=args.sequential, runs_dir=args.runs_dir,
                               checkpoint_dir=args.checkpoint_dir, on_update=update)
    except ConfigError as error:
        print(f"rnnlab-tui: {error}", file=sys.stderr)
        return 2
    out = Console(highlight=False, soft_wrap=True)
    sweep = Sweep([], report["sweep"], {"impl": report["impl"], "workers": report["workers"],
                                         "sequential": report["sequential"], "seeds": report["seeds"]})
    sweep.rows = {(r["cell"], r["length"], r["seed"]): r for r in report["runs"]}
    sweep.started = time.monotonic() - report["wall_s"]
    out.print(_table(sweep))
    if any(r["test_accuracy"] is not None for r in report["runs"]):
        print(chart(report), flush=True)
    verdict = report["lstm_above_srn_for_L_ge_15"]
    if verdict is not None:
        out.print(f"LSTM above SRN for every L >= 15: {'yes' if verdict else 'no'}")
    files = f"{report['json']} and {report['csv']}"
    if "means_csv" in report:
        files = f"{report['json']}, {report['csv']} and {report['means_csv']}"
    out.print(f"wall time {report['wall_s']:.1f} s; results: {files}")
    several = len(report["seeds"]) > 1
    failed = [r for r in report["runs"] if r["state"] == "failed"]
    for row in failed:
        seed = f" seed {row['seed']}" if several else ""
        print(f"rnnlab-tui: {row['cell']} L={row['length']}{seed} failed: {row['error']}", file=sys.stderr)
    if report["interrupted"]:
        return 130
    return 1 if failed else 0
