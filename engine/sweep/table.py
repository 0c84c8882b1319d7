"""What the sweep shows: the live table (one row per run, or per point with several seeds), the
stability map (learning rate x clipping threshold) and the charts, in plotext with the legend beside."""

from __future__ import annotations

import math
import os
import sys
import time

from ..text import visible
from .grid import spell
from .state import Sweep, seed_means

HEADINGS = {"length": "L", "clip": "max_norm", "clip_type": "norm", "batch_size": "batch"}
STATES = ("finished", "running", "queued", "stopped", "cancelled", "failed")
SHORT = {"accuracy": "acc", "perplexity": "ppl"}  # a score's name in a column heading
COLORS = ("red", "green", "blue", "magenta", "cyan", "yellow")
MARKERS = ("o", "+", "*", "#", "%", "@")


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


def _title(sweep: Sweep, elapsed: float) -> str:
    options, seeds = sweep.options, sweep.spec.seeds
    workers = options["workers"]
    where = ("sequential" if options["sequential"] else f"{workers} worker{'s' * (workers != 1)}") \
        if options["backend"] == "local" else f"ray{' at ' + options['address'] if options.get('address') else ''}"
    about = sweep.spec.study or f"preset {sweep.spec.preset}"
    logs = f"; logs {os.path.join(options['runs_dir'], sweep.id)}-<log>" if len(seeds) == 1 else ""
    # the runs folder is the user's: its control characters shown, never sent to the terminal
    return visible(f"{sweep.id}  ({about}, {options['impl']}, {where}, "
                   + (f"seeds {seeds[0]}-{seeds[-1]}, " if len(seeds) > 1 else "") + f"{elapsed:.0f} s{logs})")


def _explosions_shown(sweep: Sweep) -> bool:
    return bool({"lr", "clip"} & set(sweep.spec.axes)) or any(r["exploded"] for r in sweep.rows.values())


def _state(rows: list[dict]) -> str:
    """``finished``, ``running 120/250``, ``2 finished, 1 failed: <why>``."""
    states = [row["state"] for row in rows]
    counts = [f"{states.count(state)} {state}" for state in STATES if state in states]
    text = states[0] if len(counts) == 1 else ", ".join(counts)
    total = max(row["total"] or 0 for row in rows)
    if "running" in states and total:
        text += f" {sum(row['step'] for row in rows)}/{total * len(rows)}"
    errors = [row["error"] for row in rows if row["error"] and row["state"] in ("failed", "stopped")]
    return text + (f": {visible(errors[0][:60])}" if errors and "failed" in states else "")


def live_table(sweep: Sweep, elapsed: float | None = None):
    """One row per run; with several seeds, one per point (the mean over the seeds finished so far)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    elapsed = time.monotonic() - sweep.started if elapsed is None else elapsed
    table = Table()
    axes = list(sweep.spec.axes)
    explosions = _explosions_shown(sweep)
    several = len(sweep.spec.seeds) > 1
    columns = [HEADINGS.get(key, key) for key in axes] + ["state"]
    short = SHORT[sweep.score]
    columns += [f"mean {short}", "spread", "n"] if several else [f"best dev {short}", f"test {short}"]
    columns += ["explosion"] * explosions + ["time/run" if several else "time"] + ([] if several else ["log"])
    for column in columns:
        table.add_column(column, justify="left" if column in ("cell", "state", "log") else "right")
    groups: dict[tuple, list[dict]] = {}
    for row in sweep.rows.values():
        groups.setdefault(tuple(row[key] for key in axes) if several else (id(row),), []).append(row)
    means = iter(seed_means(list(sweep.rows.values()), axes, sweep.score)) if several else None
    for rows in groups.values():
        table.add_row(*_cells(rows, axes, next(means) if several else None, explosions, sweep))
    # above the table, not its title: a title wraps at the table's width, mid-phrase in an 80-column terminal
    return Group(Text(_title(sweep, elapsed), style="italic"), table)


def _cells(rows: list[dict], axes: list[str], mean: dict | None, explosions: bool, sweep: Sweep) -> list[str]:
    first, score = rows[0], sweep.score
    cells = [spell(first[key]) for key in axes] + [_state(rows)]
    if mean is not None:
        spread = f"{_fmt(mean[f'min_test_{score}'])}–{_fmt(mean[f'max_test_{score}'])}" if mean["n"] > 1 else ""
        cells += [_fmt(mean[f"mean_test_{score}"]), spread, str(mean["n"])]
    else:
        cells += [_fmt(first["best_dev"]), _fmt(first[f"test_{score}"])]
    if explosions:
        steps = [row["first_explosion_step"] for row in rows if row["exploded"]]
        cells.append((f"{len(steps)}/{len(rows)} from {min(steps)}" if mean is not None else f"step {steps[0]}")
                     if steps else ("-" if any(row["state"] == "finished" for row in rows) else ""))
    walls = [row["wall_s"] for row in rows if row["state"] == "finished" and row["wall_s"]]
    cells.append(f"{sum(walls) / len(walls):.0f} s" if walls else "")
    if mean is None:  # the title names the sweep: the log's name after it is enough
        cells.append(os.path.basename(first["log"]).split(f"{sweep.id}-", 1)[-1])
    return cells


def map_table(report: dict):
    """The stability map: a row per learning rate, a column per clipping threshold; each cell the first
    explosion step (- when none) and the test score."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"stability map: first explosion step (- none) · test {report['score']}",
                  caption=f"preset {report['preset']}; rows: lr; columns: clip max_norm (none = no clipping)")
    table.add_column("lr", justify="right")
    for cell in report["stability_map"][0]["thresholds"]:
        table.add_column(spell(cell["clip"]), justify="right")
    for row in report["stability_map"]:
        table.add_row(spell(row["lr"]), *[_map_cell(cell, report["score"]) for cell in row["thresholds"]])
    pooled = _pooled(report, "each entry")  # below the table, not in its caption: that wraps at its width
    return Group(table, Text(pooled)) if pooled else table


def _pooled(report: dict, what: str) -> str:
    """Under the map and charts: which axes' runs they put together (``cell = srn, lstm``), if any."""
    pools = report.get("stability_map_pools") or {}
    axes = "; ".join(f"{HEADINGS.get(key, key)} = {', '.join(map(spell, values))}" for key, values in pools.items())
    return f"{what} pools the runs of {axes}" if axes else ""


def _map_cell(cell: dict, score: str) -> str:
    if not cell["n"]:
        return ""
    if cell["exploded"] and cell["n"] > 1:
        explosion = f"{cell['exploded']}/{cell['n']} from {cell['first_explosion_step']}"
    else:
        explosion = str(cell["first_explosion_step"]) if cell["exploded"] else "-"
    return f"{explosion} · {_fmt(cell[f'mean_test_{score}'])}"


def _beside(plot: str, legend: list[str]) -> str:
    """The legend to the right of the plot, from its second line (plotext draws lines of equal width)."""
    lines = plot.split("\n")
    for index, text in enumerate(legend, start=1):
        if index < len(lines):
            lines[index] += "  " + text
    return "\n".join(lines)


def _finish(plt, legend: list[tuple[str, str, str]], heading: str) -> str:
    """The built plot with its legend ((marker, color, label) entries); colour only on a terminal."""
    colour = sys.stdout.isatty()
    entries = [heading] + [(plt.colorize(f"{marker}──", color) if colour else f"{marker}──") + f" {label}"
                           for marker, color, label in legend]
    text = _beside(plt.build(), entries)
    return text if colour else plt.uncolorize(text)


def _draw(plt, series: list[tuple], width: int) -> list[tuple[str, str, str]]:
    """Each series (marker, colour, label, points[, points drawn as x]) a thin line in its colour, then
    its points in its marker on top; the legend entries. At an x the series' markers stand side by side,
    one column apart, so that equal values (every cell at chance) do not hide each other."""
    xs = [x for entry in series for x, _ in entry[3]]
    if not xs:
        return []
    low, high = min(xs), max(xs)
    # x units per character of the canvas, and a half more: rounded to characters, neighbours never meet
    column = 1.5 * max(high - low, 1.0) / max(10, width - 8)
    middle = (len(series) - 1) / 2
    plt.xlim(low - column * (middle + 1), high + column * (middle + 1))
    for marker, color, _, points, *_ in series:
        plt.plot([x for x, _ in points], [y for _, y in points], marker="braille", color=color)
    for index, (marker, color, _, points, *exploded) in enumerate(series):
        crossed = set(exploded[0]) if exploded else set()
        for glyph, chosen in ((marker, [p for p in points if p not in crossed]), ("x", sorted(crossed))):
            if chosen:
                offset = (index - middle) * column
                plt.scatter([x + offset for x, _ in chosen], [y for _, y in chosen], marker=glyph, color=color)
    return [(marker, color, label) for marker, color, label, *_ in series]


def memory_chart(report: dict, width: int = 60, height: int = 18) -> str:
    """Test accuracy against sequence length, one line per cell."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    series = []
    means = seed_means(report["runs"], list(report["grid"]))  # with one seed, each run's own accuracy
    for index, cell in enumerate(report["cells"]):
        points = sorted((m["length"], m["mean_test_accuracy"]) for m in means
                        if m["cell"] == cell and m["mean_test_accuracy"] is not None)
        if points:
            series.append((MARKERS[index % len(MARKERS)], COLORS[index % len(COLORS)], cell, points))
    legend = _draw(plt, series, width)
    seeds = len(report["seeds"])
    plt.title("test accuracy vs sequence length" + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))
    plt.xticks(report["lengths"])
    plt.xlabel("L")
    plt.ylim(0, 1)
    return _finish(plt, legend, "cell")


def stability_charts(report: dict, width: int = 56, height: int = 14) -> str:
    """Against the learning rate (log scale), one line per clipping threshold: the largest gradient
    norm the run saw (before clipping), exploded runs marked x; then the test score."""
    import plotext as plt

    rates = report["grid"]["lr"]
    xs = [math.log10(lr) for lr in rates]
    charts = []
    for title, value in (("largest gradient norm before clipping (log10)", _peak), (f"test {report['score']}", _score)):
        plt.clear_figure()
        plt.plotsize(width, height)
        plt.theme("clear")
        series = []
        for index, clip in enumerate(report["grid"]["clip"]):
            points = [(x, value(report, lr, clip)) for x, lr in zip(xs, rates)]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                exploded = [(x, y) for x, y in points if _exploded(report, rates[xs.index(x)], clip)]
                series.append((MARKERS[index % len(MARKERS)], COLORS[index % len(COLORS)], spell(clip), points,
                               exploded))
        legend = _draw(plt, series, width)
        exploded = any(entry[4] for entry in series)
        plt.xticks(xs, [spell(lr) for lr in rates])
        plt.title(title)
        plt.xlabel("lr")
        if value is _score and report["score"] == "accuracy":
            plt.ylim(0, 1)
        legend_text = _finish(plt, legend, "max_norm")
        note = "\n    x = the run exploded (in the colour and place of its max_norm)"
        charts.append(legend_text + (note if exploded else "") + _pooled(report, "\n    each point"))
    return "\n".join(charts)


def _runs(report: dict, lr, clip) -> list[dict]:
    return [r for r in report["runs"] if r["lr"] == lr and r["clip"] == clip and r["state"] == "finished"]


def _peak(report: dict, lr, clip):
    peaks = [r["max_grad_norm"] for r in _runs(report, lr, clip) if r["max_grad_norm"]]
    return math.log10(max(peaks)) if peaks else None


def _score(report: dict, lr, clip):
    name = f"test_{report['score']}"
    values = [r[name] for r in _runs(report, lr, clip) if r[name] is not None]
    return sum(values) / len(values) if values else None


def _exploded(report: dict, lr, clip) -> bool:
    return any(r["exploded"] for r in _runs(report, lr, clip))
