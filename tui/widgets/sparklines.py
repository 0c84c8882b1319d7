"""One row per series: loss, dev score, each parameter's gradient L2 norm (log scale), total norm."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widget import Widget

from tui.format import norm_name, sci, short
from tui.state import RunView

BARS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 17
VALUE_WIDTH = 22


def spark(values: list[float], width: int, log: bool = False, limit: float | None = None,
          low: float | None = None, high: float | None = None) -> Text:
    """The last ``width`` values as bar characters; non-finite values show as a red ``!``.

    On a log scale a zero norm shows as ``_``; values above ``limit`` are drawn red.
    """
    values = values[-width:] if width > 0 else []
    text = Text(" " * (width - len(values)))
    scaled = [_scaled(value, log) for value in values]
    finite = [value for value in scaled if value is not None]
    if low is None:
        low = min(finite) if finite else 0.0
    if high is None:
        high = max(finite) if finite else 1.0
    span = high - low
    # consecutive bars of one style go in one span: far cheaper for Textual to draw than one each
    run, run_style = [], ""
    for value, level in zip(values, scaled):
        if not math.isfinite(value):
            bar, style = "!", "bold red"
        elif level is None:
            bar, style = "_", "dim"
        else:
            position = 0 if span <= 0 else int((level - low) / span * (len(BARS) - 1) + 0.5)
            bar = BARS[max(0, min(position, len(BARS) - 1))]
            style = "red" if limit is not None and value > limit else "green"
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


class Sparklines(Widget):
    DEFAULT_CSS = """
    Sparklines { height: auto; min-height: 3; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._view = RunView()

    def show(self, view: RunView) -> None:
        rows_changed = len(view.grad_norms) != len(self._view.grad_norms)
        self._view = view
        self.refresh(layout=rows_changed)  # a new parameter row changes the panel's height

    def get_content_height(self, container, viewport, width: int) -> int:
        return 3 + len(self._view.grad_norms)

    def render(self) -> Text:
        view = self._view
        total = self.size.width or 80
        longest = max((len(name) for name in view.grad_norms), default=8) + 3  # "‖∇" and "‖" around it
        label_width = min(LABEL_WIDTH, max(10, longest))
        value_width = min(VALUE_WIDTH, max(10, total // 3))
        width = max(1, total - label_width - value_width - 2)
        lines = [self._row("loss", spark(view.loss, width), short(view.loss[-1]) if view.loss else "—",
                           label_width, value_width)]
        lm = view.config.get("task") == "lm"
        score_name = "dev ppl" if lm else "dev acc"
        if view.scores:
            value = f"{short(view.scores[-1])} best {short(view.best)}"
        else:
            value = "no eval yet"
        low, high = (None, None) if lm else (0.0, 1.0)
        lines.append(self._row(score_name, spark(view.scores, width, low=low, high=high), value,
                               label_width, value_width))
        norms = list(view.grad_norms.items())
        height = self.size.height or len(norms) + 3
        folded = norms[max(0, height - 4):] if len(norms) + 3 > height >= 4 else []
        for name, series in norms[: len(norms) - len(folded)]:
            current = series[-1] if series else None
            lines.append(self._row(f"‖∇{name}‖", spark(series, width, log=True), sci(current),
                                   label_width, value_width, alarm=current is not None and not math.isfinite(current)))
        if folded:  # too many parameters for the panel: the rest share one row (v shows them all)
            lines.append(self._folded(folded, width, label_width, value_width))
        settings = view.settings
        limit = settings.clip_max_norm if settings is not None and settings.clip_on else None
        if settings is None:
            clip = ""
        elif settings.clip_on:
            clip = f" / clip {short(settings.clip_max_norm)}"
        else:
            clip = " / clip off"
        current = view.total_norm[-1] if view.total_norm else None
        over = current is not None and limit is not None and current > limit
        lines.append(self._row("total norm", spark(view.total_norm, width, log=True, limit=limit),
                               sci(current) + clip, label_width, value_width, alarm=over))
        return Text("\n").join(lines)

    @classmethod
    def _folded(cls, norms: list[tuple[str, list[float]]], width: int, label_width: int, value_width: int) -> Text:
        currents = [series[-1] for _, series in norms if series]
        finite = [value for value in currents if math.isfinite(value)]
        names = Text(" ".join(name for name, _ in norms)[:width].ljust(width), "dim")
        value = ("max " + sci(max(finite))) if finite else "—"
        return cls._row(f"+{len(norms)} more", names, value, label_width, value_width,
                        alarm=len(finite) < len(currents))

    @staticmethod
    def _row(label: str, bars: Text, value: str, label_width: int, value_width: int,
             alarm: bool = False) -> Text:
        row = Text(label[:label_width].ljust(label_width), "bold")
        row.append(" ")
        row.append_text(bars)
        row.append(" ")
        row.append(value[:value_width].ljust(value_width), "bold red" if alarm else "")
        return row
