"""Gate saturation on the dev set at the last evaluation (Karpathy, Johnson & Fei-Fei 2015): per gate
the share of activations below 0.1 (closed) and above 0.9 (open), and the share of hidden
activations with |h| > 0.99 (saturated tanh units, whose derivative is under 0.02)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.events import Saturation
from engine.text import visible

SATURATED_SHARE = 0.5  # above this share, a reading is shown in red


def _percent(value) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and value == value else "—"


def saturation_text(reading: Saturation | None, width: int = 0) -> Text:
    """The reading on one line, or where it is wider than ``width``, with the gates named without
    "gate" and on as many lines as it takes, each gate's pair of shares kept together."""
    if reading is None:
        return Text("saturation: measured on the dev set at each evaluation", "dim")
    head = Text(f"saturation (dev, step {reading.step}): ", "bold")
    parts = _parts(reading, lambda name: visible(name).replace("_", " "))
    if width and head.cell_len + sum(part.cell_len + 3 for part in parts) - 3 > width:
        parts = _parts(reading, lambda name: visible(name).removesuffix("_gate").replace("_", " "))
    text, line = head, head.cell_len
    for number, part in enumerate(parts):
        if number and width and line + 3 + part.cell_len > width:
            text.append("\n  ")
            line = 2
        elif number:
            text.append("   ")
            line += 3
        text.append_text(part)
        line += part.cell_len
    return text


def _parts(reading: Saturation, named) -> list[Text]:
    """Each gate's shares below 0.1 and above 0.9, then the saturated hidden units' share."""
    parts = []
    for name in reading.low:
        low, high = reading.low[name], reading.high.get(name, float("nan"))
        part = Text(f"{named(name)} ")
        part.append(f"<0.1 {_percent(low)}", "red" if low > SATURATED_SHARE else "")
        part.append(" · ")
        part.append(f">0.9 {_percent(high)}", "red" if high > SATURATED_SHARE else "")
        parts.append(part)
    share = reading.hidden_saturated
    part = Text("|h|>0.99 ")
    part.append(_percent(share), "bold red" if share > SATURATED_SHARE else "bold")
    return parts + [part]


class SaturationLine(Widget):
    DEFAULT_CSS = """
    SaturationLine { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._shown: Saturation | None | bool = False
        self._lines = 1

    def show(self, reading: Saturation | None) -> None:
        if reading is not self._shown:
            self._shown = reading
            lines = self._text(self.content_size.width).plain.count("\n") + 1
            self.refresh(layout=lines != self._lines)  # a new layout only when its height changes
            self._lines = lines

    def _text(self, width: int) -> Text:
        return saturation_text(None if self._shown is False else self._shown, width or 80)

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._text(width).plain.count("\n") + 1

    def render(self) -> Text:
        return self._text(self.content_size.width)
