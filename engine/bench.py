"""``rnnlab-tui bench``: the speed figures, as a table or (``--json``) a machine-readable report.

* cells: forward+backward time of the ladder naive -> scratch -> torch (``LADDER`` says what each rung
  changes) on the same inputs and the same weights, for SRN, LSTM and GRU at (batch 8, T 20, H 32)
  and (batch 64, T 20, H 32), with the largest scratch-vs-torch difference seen (outputs and
  gradients);
* monitoring: training steps/s of the ``explode`` and ``memory`` presets with full monitoring (norms,
  alarms, step events written to a log by the event writer) and with the bare loop (``monitor=False``),
  from steps of one run interleaved in blocks and from whole runs in pairs;
* ingest: the TUI's event ingest (``tui.bench.measure_ingest``, run in a child process so the engine
  never loads textual), and generation speed (``engine.generate.measure_generation_speed``), when
  those are installed.

Timings are medians over interleaved repeats (the machine may be busy with other work); every
figure comes with the numbers it was computed from.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = ((8, 20, 32), (64, 20, 32))  # (batch, time steps, hidden = input size)
CELL_KINDS = ("srn", "lstm", "gru")
PRESETS = ("explode", "memory")
# From the page to the library: one function, three implementations.
LADDER = {
    "naive": "one product per gate per step (the textbook's code)",
    "scratch": "the same equations, the input projections of all steps in one product and one recurrent "
               "product per step for all gates; autograd for BPTT",
    "torch": "torch.nn.RNN/LSTM/GRU, one library call per sequence (PyTorch's fused kernels)",
}


def _median(values):
    return statistics.median(values) if values else float("nan")


# --- cells ---------------------------------------------------------------------


def time_cells(cell: str, batch: int, steps: int, hidden: int, repeats: int, number: int) -> dict:
    """Forward+backward milliseconds of torch, scratch and naive cells given the same weights."""
    import torch

    from .cells import Recurrent

    torch.manual_seed(0)
    library = Recurrent(cell, "torch", hidden, hidden, init="torch")
    # PyTorch's GRU resets after the recurrent product: the scratch and naive cells do the same here,
    # so all three compute one function.
    reset_after = cell == "gru"
    scratch = Recurrent(cell, "scratch", hidden, hidden, reset_after=reset_after)
    naive = Recurrent(cell, "naive", hidden, hidden, reset_after=reset_after)
    for model in (scratch, naive):
        model.load_textbook_parameters(library.textbook_parameters())
    x = torch.randn(batch, steps, hidden)
    weights = torch.randn(batch, steps, hidden)
    models = {"torch": library, "scratch": scratch, "naive": naive}

    def step(model):
        inputs = x.detach().requires_grad_()
        outputs, _ = model(inputs)
        (outputs * weights).sum().backward()
        return outputs, inputs.grad

    # the same function: outputs, input gradients and every textbook gradient
    results = {}
    for name, model in models.items():
        model.zero_grad()
        outputs, input_grad = step(model)
        results[name] = [outputs.detach(), input_grad] + [g.clone() for g in model.textbook_gradients().values()]
    difference = max((a - b).abs().max().item() for a, b in zip(results["torch"], results["scratch"]))
    scale = max(a.abs().max().item() for a in results["torch"])

    times = {name: [] for name in models}
    for _ in range(2):  # warm-up
        for model in models.values():
            step(model)
    for _ in range(repeats):
        for name, model in models.items():  # interleaved, so a busy moment hits all three alike
            started = time.perf_counter()
            for _ in range(number):
                step(model)
            times[name].append((time.perf_counter() - started) / number * 1000)
    ms = {name: _median(values) for name, values in times.items()}
    return {"cell": cell, "batch": batch, "steps": steps, "hidden": hidden,
            "torch_ms": round(ms["torch"], 4), "scratch_ms": round(ms["scratch"], 4), "naive_ms": round(ms["naive"], 4),
            "scratch_over_torch": round(ms["scratch"] / ms["torch"], 3),
            "naive_over_torch": round(ms["naive"] / ms["torch"], 3),
            "naive_over_scratch": round(ms["naive"] / ms["scratch"], 3),
            "max_abs_difference": difference, "max_relative_difference": difference / max(scale, 1e-12),
            "repeats": repeats, "number": number}


# --- monitoring ----------------------------------------------------------------


def _train(preset: str, epochs: int, monitor: bool, folder: str) -> dict:
    """One run of the preset, events to a log through the real writer; wall time of ``run()``."""
    from .config import build_config
    from .runner import Runner
    from .stream import EventWriter

    run_id = f"bench-{preset}-{'on' if monitor else 'off'}-{time.monotonic_ns()}"
    config = build_config(preset, epochs=epochs, checkpoint_dir=folder, runs_dir=folder, run_id=run_id)
    writer = EventWriter(os.path.join(folder, f"{run_id}.jsonl"))
    runner = Runner(config, writer.emit, monitor=monitor)
    step_times = []
    train_step = runner._train_step

    def timed_step(batch):
        started = time.perf_counter()
        train_step(batch)
        step_times.append(time.perf_counter() - started)

    runner._train_step = timed_step
    started = time.perf_counter()
    runner.run()
    writer.close()
    wall = time.perf_counter() - started
    return {"steps": runner.step, "wall_s": wall, "step_s": _median(step_times)}


def _scratch_folder() -> str | None:
    """Where the measured runs write their logs and checkpoints: memory-backed when the system has
    it, so that the disk's flush latency (the same work for both loops) does not blur the figure."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def time_interleaved(preset: str, rounds: int, block: int) -> dict:
    """Monitored vs bare steps of one run, in alternating blocks of ``block`` steps (random order in
    each round), so that both loops see the same machine from moment to moment.

    The run is the preset's, with its event writer; ``Runner.monitor`` switches between the monitored
    loop and the bare one at block boundaries. The writer thread's CPU time is added, all of it, to the
    monitored side: a bound from above on what serialising the events costs the loop.
    """
    import itertools
    import random

    from .config import build_config
    from .runner import Runner
    from .stream import EventWriter

    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-", dir=_scratch_folder()) as folder:
        config = build_config(preset, checkpoint_dir=folder, runs_dir=folder, run_id="bench-interleaved")
        writer = EventWriter(os.path.join(folder, "bench-interleaved.jsonl"))
        runner = Runner(config, writer.emit, monitor=True)
        runner.task.start_epoch()
        batches = itertools.cycle(list(runner.task.batches(1)))
        for _ in range(2 * block):  # warm-up
            runner._train_step(next(batches))
        order, seconds = [True, False], {True: 0.0, False: 0.0}
        shuffle = random.Random(0).shuffle
        for _ in range(rounds):
            shuffle(order)
            for monitor in order:
                runner.monitor = monitor
                started = time.perf_counter()
                for _ in range(block):
                    runner._train_step(next(batches))
                seconds[monitor] += time.perf_counter() - started
        writer.close()
        writer_s = writer.cpu_s  # warm-up included
    steps = rounds * block
    monitored = seconds[True] + writer_s
    return {"steps_each": steps, "block": block, "monitored_us_per_step": round(monitored / steps * 1e6, 1),
            "bare_us_per_step": round(seconds[False] / steps * 1e6, 1),
            "writer_us_per_step": round(writer_s / steps * 1e6, 1),
            "ratio": round(seconds[False] / monitored, 3)}


def time_monitoring(preset: str, epochs: int, repeats: int, rounds: int) -> dict:
    """Monitored vs bare training steps/s, two ways: steps of one run interleaved in blocks (the
    figure; see ``time_interleaved``), and whole runs of the preset (evaluation and checkpoints
    included) in pairs, ABBA, medians, which the machine's changing speed blurs more."""
    interleaved = time_interleaved(preset, rounds, 16)
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-", dir=_scratch_folder()) as folder:
        _train(preset, 1, True, folder)  # warm-up
        on, off, ratios = [], [], []
        for index in range(repeats):
            order = (True, False) if index % 2 == 0 else (False, True)
            pair = {monitor: _train(preset, epochs, monitor, folder) for monitor in order}
            on.append(pair[True]["steps"] / pair[True]["wall_s"])
            off.append(pair[False]["steps"] / pair[False]["wall_s"])
            ratios.append(on[-1] / off[-1])
        steps = pair[True]["steps"]
    return {"preset": preset, "ratio": interleaved["ratio"], "interleaved": interleaved,
            "whole_runs": {"epochs": epochs, "steps_per_run": steps, "repeats": repeats,
                           "monitored_steps_per_s": round(_median(on), 1),
                           "unmonitored_steps_per_s": round(_median(off), 1),
                           "ratio": round(_median(ratios), 3), "pair_ratios": [round(r, 3) for r in ratios]}}


# --- figures from the other parts of the product ---------------------------------


def measure_ingest(n_steps: int) -> dict:
    """The TUI's ingest figures, from a child process (the engine never imports textual)."""
    code = ("import json, sys\n"
            "try:\n    from tui.bench import measure_ingest\n"
            "except ImportError as error:\n    print(json.dumps({'unavailable': str(error)})); sys.exit(0)\n"
            f"print(json.dumps(measure_ingest(n_steps={int(n_steps)})))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"unavailable": "timed out"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"unavailable": lines[-1] if lines else f"exit status {done.returncode}"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"unavailable": "no figures in the output"}


def measure_generation(quick: bool) -> dict:
    try:
        from .generate import measure_generation_speed
    except ImportError as error:
        return {"unavailable": str(error)}
    try:
        return measure_generation_speed(hidden=256, repeats=1) if quick else measure_generation_speed(hidden=256)
    except TypeError:
        return measure_generation_speed(hidden=256)


# --- the report ----------------------------------------------------------------


def collect(quick: bool = False, progress=None) -> dict:
    import torch

    say = progress or (lambda message: None)
    threads = torch.get_num_threads()
    from .session import configure_torch

    configure_torch(1)  # as a training run does
    report = {"quick": quick, "machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                                          "torch_threads": 1, "default_torch_threads": threads,
                                          "load_average": [round(v, 2) for v in os.getloadavg()]},
              "cells": [], "monitoring": {}}
    repeats, number = (2, 2) if quick else (15, 10)
    for batch, steps, hidden in SIZES:
        for cell in CELL_KINDS:
            say(f"cells: {cell} at batch {batch}")
            report["cells"].append(time_cells(cell, batch, steps, hidden, repeats, number))
    report["ladder"] = LADDER
    report["scratch_over_torch"] = {f"batch {batch}": {row["cell"]: row["scratch_over_torch"]
                                                       for row in report["cells"] if row["batch"] == batch}
                                    for batch, _, _ in SIZES}
    for preset in PRESETS:
        say(f"monitoring: {preset}")
        epochs = {"explode": 2 if quick else 40, "memory": 1 if quick else 8}[preset]
        report["monitoring"][preset] = time_monitoring(preset, epochs, 2 if quick else 15, 4 if quick else 300)
    say("event ingest")
    report["ingest"] = measure_ingest(1_000 if quick else 100_000)
    say("generation")
    report["generation"] = measure_generation(quick)
    report["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    return report


def print_tables(report: dict, console) -> None:
    from rich.table import Table

    for rung, change in report["ladder"].items():
        console.print(f"[bold]{rung}[/bold]: {change}")
    cells = Table(title="forward+backward, ms (median)  -  same weights, same inputs")
    for column in ("cell", "batch", "torch", "scratch", "naive", "scratch/torch", "naive/torch", "max diff"):
        cells.add_column(column, justify="left" if column == "cell" else "right")
    for row in report["cells"]:
        cells.add_row(row["cell"], str(row["batch"]), f"{row['torch_ms']:.3f}", f"{row['scratch_ms']:.3f}",
                      f"{row['naive_ms']:.3f}", f"{row['scratch_over_torch']:.2f}", f"{row['naive_over_torch']:.2f}",
                      f"{row['max_abs_difference']:.1e}")
    console.print(cells)
    monitoring = Table(title="training steps/s: full monitoring vs the bare loop")
    for column in ("preset", "monitored us/step", "bare us/step", "ratio (interleaved)", "ratio (whole runs)"):
        monitoring.add_column(column, justify="left" if column == "preset" else "right")
    for name, row in report["monitoring"].items():
        steps, runs = row["interleaved"], row["whole_runs"]
        monitoring.add_row(name, f"{steps['monitored_us_per_step']:.0f}", f"{steps['bare_us_per_step']:.0f}",
                           f"{row['ratio']:.3f}", f"{runs['ratio']:.3f}")
    console.print(monitoring)
    for title, key in (("event ingest (TUI)", "ingest"), ("generation", "generation")):
        figures = report.get(key) or {}
        text = ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in figures.items())
        console.print(f"[bold]{title}[/bold]: {text}")
    machine = report["machine"]
    console.print(f"{machine['cpus']} CPUs, torch {machine['torch']} on 1 thread; load average "
                  f"{machine['load_average'][0]} before, {machine['load_average_after'][0]} after")


def main(args) -> int:
    from rich.console import Console

    err = Console(stderr=True)
    report = collect(quick=bool(getattr(args, "quick", False)),
                     progress=lambda message: err.print(f"[dim]bench: {message}[/dim]"))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        print_tables(report, Console())
    return 0
