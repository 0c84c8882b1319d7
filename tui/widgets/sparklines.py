"""One row per series: loss, dev score, the recurrent parameters' gradient L2 norms (log scale), the
others, the total; then a row of marks (clip, lr, rewind, pause, alarms) at their steps.

The series are the last steps (one bar a step) or, with ``w``, the whole run in buckets, each bar the
largest value of its bucket so that no one-step spike is lost. A marked step is tinted in every row.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.widget import Widget

from tui.format import sci, short
from tui.history import decades
from tui.state import Mark, RunView

BARS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 17
VALUE_WIDTH = 22
MARK_GLYPHS = {"clip": ("c", "bold green"), "lr": ("l", "bold cyan"), "rewind": ("r", "bold blue"),
               "pause": ("p", "bold yellow")}
# at one step, a later kind's glyph shows: an alarm over the pause it caused (a live run pauses at its
# first explosion), what the user changed over the alarm (told in the timeline above), a rewind over all
MARK_ORDER = ("pause", "alarm", "lr", "clip", "rewind")
ALARM_GLYPHS = {"explosion": ("▲", "bold red"), "non_finite": ("!", "bold magenta"),
                "saturation": ("▼", "bold yellow")}
TINT = "on grey23"


def mark_glyph(mark: Mark) -> tuple[str, str]:
    if mark.kind == "alarm":
        return ALARM_GLYPHS.get(mark.label, ("!", "bold red"))
    return MARK_GLYPHS.get(mark.kind, ("•", "bold"))


def is_recurrent(name: str) -> bool:
    """The recurrent layer's parameters (W, U, b or the gates'), not the embedding or output layer."""
    return not name.startswith(("embedding", "linear"))


def _fold_order(name: str, first: set[str]) -> tuple[bool, bool, bool]:
    """Which norm rows a short panel keeps first: those in ``first`` (what an alarm named, which the
    timeline points at, and a recurrent matrix U: the gradient's path back in time), a U before the
    others; then the other Us, then the rest of the recurrent layer, then the others."""
    return name not in first, not name.startswith("U"), not is_recurrent(name)


def spark(values: list, width: int, log: bool = False, limit: float | None = None,
          low: float | None = None, high: float | None = None, tinted: frozenset = frozenset(),
          colour: str = "green") -> Text:
    """The last ``width`` values as bar characters, right-aligned; non-finite values show as a red
    ``!``, a zero norm on a log scale as ``_``, a step the run does not have (None) as a blank; values
    above ``limit`` are red; columns in ``tinted`` (counted from the left of the row) get a background."""
    values = values[-width:] if width > 0 else []
    pad = width - len(values)
    text = Text(" " * pad)
    scaled = [None if value is None else _scaled(value, log) for value in values]
    finite = [value for value in scaled if value is not None]
    low = (min(finite) if finite else 0.0) if low is None else low
    high = (max(finite) if finite else 1.0) if high is None else high
    span = high - low
    # consecutive bars of one style go in one span: far cheaper for Textual to draw than one each
    run, run_style = [], ""
    for column, (value, level) in enumerate(zip(values, scaled), pad):
        if value is None:
            bar, style = " ", ""
        elif not math.isfinite(value):
            bar, style = "!", "bold red"
        elif level is None:
            bar, style = "_", "dim"
        else:
            if span > 0:
                position = int((level - low) / span * (len(BARS) - 1) + 0.5)
            else:  # one level: on a log row it stands above the zeros (``_``), so it is the tallest
                position = len(BARS) - 1 if log else 0
            bar = BARS[max(0, min(position, len(BARS) - 1))]
            style = "red" if limit is not None and value > limit else colour
        if column in tinted:
            style = f"{style} {TINT}"
        if style != run_style and run:
            text.append("".join(run), run_style)
            run = []
        run.append(bar)
        run_style = style
    if run:
        text.append("".join(run), run_style)
    return text


def _scaled(value: float, log: bool) -> float | None:
    if not math.isfinite(value):
        return None
    if log:
        return math.log10(value) if value > 0 else None
    return value


def _style(overlay) -> str:
    return f"color({overlay.colour})"


def _last(values: list) -> float | None:
    """The last value a run has (None: it has no step in the columns drawn)."""
    return next((value for value in reversed(values) if value is not None), None)


def _span(rows: list[list], log: bool = False) -> tuple[float | None, float | None]:
    """The lowest and highest finite value of several runs' rows (log10 of them when ``log``)."""
    levels = [_scaled(value, log) for values in rows for value in values if value is not None]
    finite = [level for level in levels if level is not None]
    return (min(finite), max(finite)) if finite else (None, None)


def log_range(values: list[float]) -> str:
    """The decades a norm row spans, e.g. 1e-9..1e7, or 0..1e7 when it has zeros (the vanished gradient
    after a collapse, drawn as _)."""
    positive = [value for value in values if math.isfinite(value) and value > 0]
    if not positive:
        return "all 0" if values else "—"
    ticks = decades(min(positive), max(positive), most=99)
    low = "0" if 0.0 in values else f"1e{ticks[0]}"
    return f"{low}..1e{ticks[-1]}" if ticks else "—"


class Sparklines(Widget):
    DEFAULT_CSS = """
    Sparklines { height: auto; min-height: 3; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._view = RunView()
        self._overlays: list = []  # the runs behind the front (tui.runs.Overlay), one row each per series
        self._colour = "green"  # the front run's

    def show(self, view: RunView, overlays=(), colour: str = "green") -> None:
        rows_changed = (len(view.grad_norms), len(overlays)) != (len(self._view.grad_norms), len(self._overlays))
        self._view, self._overlays, self._colour = view, list(overlays), colour
        self.refresh(layout=rows_changed)  # a new parameter row changes the panel's height

    def get_content_height(self, container, viewport, width: int) -> int:
        return 4 + 3 * len(self._overlays) + len(self._view.grad_norms)

    def _widths(self) -> tuple[int, int, int]:
        total = self.content_size.width or 80
        longest = max((len(name) for name in self._view.grad_norms), default=8) + 3  # "‖∇" and "‖" around it
        label_width = min(LABEL_WIDTH, max(10, longest))
        value_width = min(VALUE_WIDTH, max(10, total // 3))
        return label_width, max(1, total - label_width - value_width - 2), value_width

    def bars_width(self) -> int:
        """How many steps (or buckets) a row shows: the view asked of the state."""
        return self._widths()[1]

    def render(self) -> Text:
        view = self._view
        label_width, width, value_width = self._widths()
        pad = width - len(view.loss)
        tinted = frozenset(pad + point for point, _ in view.marks if 0 <= point < len(view.loss))

        def row(label, bars, value, alarm=False):
            return self._row(label, bars, value, label_width, value_width, alarm)

        overlays, colour = self._overlays, self._colour
        # every run's loss (and total norm) on one scale, so that a higher bar is a higher value
        low, high = _span([view.loss, *(overlay.loss for overlay in overlays)])
        lines = [row("loss", spark(view.loss, width, tinted=tinted, colour=colour, low=low, high=high),
                     short(view.current_loss))]
        for overlay in overlays:
            lines.append(row(f"loss {overlay.letter}", spark(overlay.loss, width, colour=_style(overlay), low=low,
                                                              high=high), short(overlay.current_loss)))
        lm = view.config.get("task") == "lm"
        value = f"{short(view.scores[-1])} best {short(view.best)}" if view.scores else "no eval yet"
        low, high = (None, None) if lm else (0.0, 1.0)
        label = "dev ppl" if lm else "dev acc"
        lines.append(row(label, spark(view.scores, width, low=low, high=high, colour=colour), value))
        for overlay in overlays:
            lines.append(row(f"{label} {overlay.letter}", spark(overlay.scores, width, low=low, high=high,
                                                                 colour=_style(overlay)),
                             short(_last(overlay.scores)) if overlay.scores else "no eval yet"))
        norms = sorted(view.grad_norms.items(), key=lambda item: not is_recurrent(item[0]))  # stable
        height = self.size.height or len(norms) + 4 + 3 * len(overlays)
        room = max(1, height - 4 - 3 * len(overlays))
        folded = []
        if len(norms) > room:  # too many rows: the recurrent matrices U (the gradient's path back in time) stay
            first = {alarm.parameter for alarm in view.alarms} | {next((n for n, _ in norms if n.startswith("U")), "")}
            kept = {name for name, _ in sorted(norms, key=lambda item: _fold_order(item[0], first))[: room - 1]}
            folded = [item for item in norms if item[0] not in kept]
            norms = [item for item in norms if item[0] in kept]
        for name, series in norms:
            current = series[-1] if series else None
            shown = log_range(series) if view.whole else sci(current)
            lines.append(row(f"‖∇{name}‖", spark(series, width, log=True, tinted=tinted, colour=colour), shown,
                             current is not None and not math.isfinite(current)))
        if folded:  # too many parameters for the panel: the rest share one row (v shows them all)
            lines.append(self._folded(folded, width, label_width, value_width))
        low, high = _span([view.total_norm, *(overlay.total_norm for overlay in overlays)], log=True)
        lines.append(self._total_row(view, width, tinted, row, colour, low, high))
        for overlay in overlays:
            settings = overlay.settings
            limit = settings.clip_max_norm if settings is not None and settings.clip_on else None
            lines.append(row(f"total {overlay.letter}", spark(overlay.total_norm, width, log=True, limit=limit,
                                                               colour=_style(overlay), low=low, high=high),
                             sci(_last(overlay.total_norm))))
        lines.append(self._marks_row(view, width, pad, label_width, value_width))
        return Text("\n").join(lines)

    @staticmethod
    def _total_row(view: RunView, width: int, tinted: frozenset, row, colour: str, low, high) -> Text:
        settings = view.settings
        limit = settings.clip_max_norm if settings is not None and settings.clip_on else None
        clip = "" if settings is None else (f" / clip {short(settings.clip_max_norm)}" if settings.clip_on
                                            else " / clip off")
        current = view.total_norm[-1] if view.total_norm else None
        value = log_range(view.total_norm) if view.whole else sci(current) + clip
        over = current is not None and limit is not None and current > limit
        bars = spark(view.total_norm, width, log=True, limit=limit, tinted=tinted, colour=colour, low=low, high=high)
        return row("total norm", bars, value, over)

    @classmethod
    def _marks_row(cls, view: RunView, width: int, pad: int, label_width: int, value_width: int) -> Text:
        cells = [(" ", "")] * width
        for point, mark in sorted(view.marks, key=lambda item: MARK_ORDER.index(item[1].kind)):
            if 0 <= pad + point < width:
                cells[pad + point] = mark_glyph(mark)
        bars = Text()
        for glyph, style in cells:
            bars.append(glyph, style)
        steps = view.first_steps
        span = f"{steps[0]}–{view.step}" if steps else "—"
        value = f"whole run {span} (w)" if view.whole else f"steps {span} (w: all)"
        if len(value) > value_width:  # five-digit steps: the span, without the key's hint
            value = value.rsplit(" (", 1)[0]
        return cls._row("marks", bars, value, label_width, value_width, dim=True)

    @classmethod
    def _folded(cls, norms: list[tuple[str, list[float]]], width: int, label_width: int, value_width: int) -> Text:
        currents = [series[-1] for _, series in norms if series]
        finite = [value for value in currents if math.isfinite(value)]
        names = Text(_names_that_fit([name for name, _ in norms], width).ljust(width), "dim")
        value = ("max " + sci(max(finite))) if finite else "—"
        return cls._row(f"+{len(norms)} more", names, value, label_width, value_width,
                        alarm=len(finite) < len(currents))

    @staticmethod
    def _row(label: str, bars: Text, value: str, label_width: int, value_width: int,
             alarm: bool = False, dim: bool = False) -> Text:
        row = Text(label[:label_width].ljust(label_width), "dim" if dim else "bold")
        row.append(" ")
        row.append_text(bars)
        row.append(" ")
        row.append(value[:value_width].ljust(value_width), "bold red" if alarm else ("dim" if dim else ""))
        return row


def _names_that_fit(names: list[str], width: int) -> str:
    """The names that fit ``width`` whole, and "…" for the rest."""
    if len(" ".join(names)) <= width:
        return " ".join(names)
    kept: list[str] = []
    for name in names:
        if len(" ".join(kept + [name, "…"])) > width:
            break
        kept.append(name)
    return " ".join(kept + ["…"])[:width]
