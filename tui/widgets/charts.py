"""Full plotext charts of the same series: loss, log-scaled gradient norms with the clip threshold,
and the dev score with its evaluation points marked."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from tui.state import RunState

MAX_POINTS = 200  # points per series handed to plotext; longer runs are thinned


class Charts(Horizontal):
    DEFAULT_CSS = """
    Charts { height: 1fr; }
    Charts > PlotextPlot { width: 1fr; height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="chart-loss")
        yield PlotextPlot(id="chart-norms")
        yield PlotextPlot(id="chart-score")

    def show(self, state: RunState, end: int | None = None) -> None:
        """Redraw from the whole run up to series position ``end`` (None = everything)."""
        length = len(state.steps) if end is None else end
        every = max(1, length // MAX_POINTS)
        series = state.series(every, length)
        steps = series.pop("step")
        last_step = steps[-1] if steps else 0

        plot = self.query_one("#chart-loss", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        plt.title("loss")
        _line(plt, steps, series.pop("loss"), "loss", log=False)
        plot.refresh()

        plot = self.query_one("#chart-norms", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        plt.title("gradient norms (log)")
        total = series.pop("total_norm")
        # log10 is taken here and the ticks labelled as powers of ten: plotext's own log scale
        # fails on small plots, and the norms span 1e-30..1e7 in one run.
        exponents = []
        for name, values in series.items():
            exponents += _line(plt, steps, values, name, log=True)
        exponents += _line(plt, steps, total, "total", log=True)
        settings = state.settings_at(last_step) if state.settings else None
        if settings is not None and settings.clip_on and settings.clip_max_norm > 0:
            threshold = math.log10(settings.clip_max_norm)
            exponents.append(threshold)
            plt.hline(threshold, "red")
            plt.text(f"clip {settings.clip_max_norm:g}", steps[0] if steps else 0, threshold, color="red")
        if exponents:
            low, high = math.floor(min(exponents)), math.ceil(max(exponents))
            stride = max(1, (high - low) // 6)
            ticks = list(range(low, high + 1, stride))
            plt.yticks(ticks, [f"1e{tick}" for tick in ticks])
        plot.refresh()

        plot = self.query_one("#chart-score", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        evals = [item for item in state.evals if item.step <= last_step]
        lm = state.task == "lm"
        plt.title("dev perplexity" if lm else "dev accuracy")
        points = [(item.step, item.perplexity if lm else item.accuracy) for item in evals]
        points = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
        if points:
            xs, ys = zip(*points)
            plt.plot(list(xs), list(ys), marker="braille")
            plt.scatter(list(xs), list(ys), marker="●")
        plot.refresh()


def _line(plt, steps: list[int], values: list[float], label: str, log: bool) -> list[float]:
    """Plot one series (log10 of it when ``log``); the y values drawn."""
    points = [(x, y) for x, y in zip(steps, values) if math.isfinite(y) and (y > 0 or not log)]
    if not points:
        return []
    xs, ys = zip(*points)
    ys = [math.log10(y) for y in ys] if log else list(ys)
    plt.plot(list(xs), ys, label=label, marker="braille")
    return ys
