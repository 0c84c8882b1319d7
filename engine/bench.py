"""``rnnlab-tui bench``: the speed figures, as a table or (``--json``) a machine-readable report.

* cells: forward+backward time of the ladder naive -> scratch -> torch (``LADDER`` says what each rung
  changes) on the same inputs and the same weights, for SRN, LSTM and GRU at (batch 8, T 20, H 32)
  and (batch 64, T 20, H 32), with the largest scratch-vs-torch difference seen (outputs and
  gradients);
* monitoring: training steps/s of the ``explode`` and ``memory`` presets with monitoring (norms,
  alarms, step events written to a log by the event writer), with that and every instrument (the
  gradient flow and gate saturation), and with the bare loop (``MODES``), from steps of one run
  interleaved in blocks and from whole runs;
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

# What the loop does besides training, in three steps: nothing (the textbook's loop); the monitoring
# of every step (norms, clipping on their total, the finiteness check, alarms, Step events written by
# the event writer); and that with every instrument (gradient flow at least 10 times a second, gate
# saturation at each evaluation), which is how a run trains.
MODES = {"bare": dict(monitor=False, instruments=False), "monitored": dict(monitor=True, instruments=False),
         "watching": dict(monitor=True, instruments=True)}


def _train(preset: str, epochs: int, mode: str, folder: str) -> dict:
    """One run of the preset, events to a log through the real writer; wall time of ``run()``."""
    from .config import build_config
    from .runner import Runner
    from .stream import EventWriter

    run_id = f"bench-{preset}-{mode}-{time.monotonic_ns()}"
    config = build_config(preset, epochs=epochs, checkpoint_dir=folder, runs_dir=folder, run_id=run_id)
    writer = EventWriter(os.path.join(folder, f"{run_id}.jsonl"))
    runner = Runner(config, writer.emit, **MODES[mode])
    started = time.perf_counter()
    runner.run()
    writer.close()
    return {"steps": runner.step, "wall_s": time.perf_counter() - started}


def _scratch_folder() -> str | None:
    """Where the measured runs write their logs and checkpoints: memory-backed when the system has
    it, so that the disk's flush latency (the same work for both loops) does not blur the figure."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def time_interleaved(preset: str, rounds: int, block: int) -> dict:
    """Steps/s of the three loops (``MODES``) on one run, in alternating blocks of ``block`` steps
    (random order in each round), so that every loop sees the same machine from moment to moment.

    Training steps only: evaluations, and the gate saturation measured with each, are in the whole
    runs (``time_monitoring``). Wall time, with the event writer on its own thread beside the loop as
    in a real run; after each block, untimed, the writer finishes what the block emitted, so no block
    pays for another's events.
    A ratio is the median over the rounds of the ratio within each round: a moment when the machine
    is busy with other work slows one round's blocks, not the figure (the ratio of the total times,
    which such a moment moves by several percent, is reported beside it).
    """
    import itertools
    import random

    from .config import build_config
    from .runner import Runner
    from .stream import EventWriter

    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-", dir=_scratch_folder()) as folder:
        config = build_config(preset, checkpoint_dir=folder, runs_dir=folder, run_id="bench-interleaved")
        writer = EventWriter(os.path.join(folder, "bench-interleaved.jsonl"))
        runner = Runner(config, writer.emit)
        runner.task.start_epoch()
        batches = itertools.cycle(list(runner.task.batches(1)))
        for _ in range(block):  # warm-up
            runner._train_step(next(batches))
        order, seconds = list(MODES), {mode: [] for mode in MODES}  # each block's time, round by round
        shuffle = random.Random(0).shuffle
        watched_until = time.monotonic()
        for _ in range(rounds):
            shuffle(order)
            for mode in order:
                runner.monitor, runner.instruments = MODES[mode]["monitor"], MODES[mode]["instruments"]
                if runner.instruments:  # the flow's clock stands still between watching blocks: it
                    # measures 10 times a second of watched training, as in a run watched throughout
                    runner.last_flow += time.monotonic() - watched_until
                started = time.perf_counter()
                for _ in range(block):
                    runner._train_step(next(batches))
                seconds[mode].append(time.perf_counter() - started)
                watched_until = time.monotonic() if runner.instruments else watched_until
                writer.written()
        writer.close()
    steps = rounds * block

    def over_bare(mode: str) -> float:
        return round(_median([bare / other for bare, other in zip(seconds["bare"], seconds[mode])]), 3)

    return {"steps_each": steps, "block": block,
            **{f"{mode}_us_per_step": round(_median(seconds[mode]) / block * 1e6, 1) for mode in MODES},
            "writer_cpu_us_per_step": round(writer.cpu_s / (steps * 2 + block) * 1e6, 1),
            "monitored_over_bare": over_bare("monitored"), "watching_over_bare": over_bare("watching"),
            "ratio_of_totals": {mode: round(sum(seconds["bare"]) / sum(seconds[mode]), 3)
                                for mode in ("monitored", "watching")}}


def time_monitoring(preset: str, epochs: int, repeats: int, rounds: int) -> dict:
    """Steps/s of the three loops (``MODES``) relative to the bare one, two ways: steps of one run
    interleaved in blocks (the figure; see ``time_interleaved``), and whole runs of the preset
    (evaluation and checkpoints included) in rotating order, medians, which the machine's changing
    speed blurs more."""
    interleaved = time_interleaved(preset, rounds, 64)
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-", dir=_scratch_folder()) as folder:
        _train(preset, 1, "watching", folder)  # warm-up
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        ratios: dict[str, list[float]] = {"monitored": [], "watching": []}
        order = list(MODES)
        for _ in range(repeats):
            order = order[1:] + order[:1]
            runs = {mode: _train(preset, epochs, mode, folder) for mode in order}
            for mode, run in runs.items():
                rates[mode].append(run["steps"] / run["wall_s"])
            for mode in ratios:
                ratios[mode].append(rates[mode][-1] / rates["bare"][-1])
        steps = runs["bare"]["steps"]
    return {"preset": preset, "monitored_over_bare": interleaved["monitored_over_bare"],
            "watching_over_bare": interleaved["watching_over_bare"], "interleaved": interleaved,
            "whole_runs": {"epochs": epochs, "steps_per_run": steps, "repeats": repeats,
                           **{f"{mode}_steps_per_s": round(_median(rates[mode]), 1) for mode in MODES},
                           **{f"{mode}_over_bare": round(_median(ratios[mode]), 3) for mode in ratios}}}


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
        report["monitoring"][preset] = time_monitoring(preset, epochs, 1 if quick else 9, 2 if quick else 60)
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
    for column in ("cell", "batch", "torch", "scratch", "naive", "scratch\n/torch", "naive\n/torch", "max\ndiff"):
        cells.add_column(column, justify="left" if column == "cell" else "right")
    for row in report["cells"]:
        cells.add_row(row["cell"], str(row["batch"]), f"{row['torch_ms']:.3f}", f"{row['scratch_ms']:.3f}",
                      f"{row['naive_ms']:.3f}", f"{row['scratch_over_torch']:.2f}", f"{row['naive_over_torch']:.2f}",
                      f"{row['max_abs_difference']:.1e}")
    console.print(cells)
    noisy = " (--quick: a few rounds, so the ratios are rough)" if report["quick"] else ""
    monitoring = Table(title="the cost of watching: µs per training step, and steps/s relative to the bare loop",
                       caption="monitored: norms, clipping, alarms, events; watching: and every instrument; "
                       f"whole runs: monitored/bare, watching/bare{noisy}")
    for column in ("preset", "bare\nµs", "monitored\nµs", "watching\nµs", "mon\n/bare", "watch\n/bare",
                   "whole\nruns"):
        monitoring.add_column(column, justify="left" if column == "preset" else "right")
    for name, row in report["monitoring"].items():
        steps, runs = row["interleaved"], row["whole_runs"]
        monitoring.add_row(name, *(f"{steps[f'{mode}_us_per_step']:.0f}" for mode in MODES),
                           f"{row['monitored_over_bare']:.3f}", f"{row['watching_over_bare']:.3f}",
                           f"{runs['monitored_over_bare']:.2f}, {runs['watching_over_bare']:.2f}")
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
