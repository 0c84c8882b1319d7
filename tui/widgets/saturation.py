"""Gate saturation on the dev set at the last evaluation (Karpathy, Johnson & Fei-Fei 2015): per gate
the share of activations below 0.1 (closed) and above 0.9 (open), and the share of hidden
activations with |h| > 0.99 (saturated tanh units, whose derivative is under 0.02)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.events import Saturation
from engine.text import visible

SATURATED_SHARE = 0.5  # above this share, a reading is shown in red


def _percent(value) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and value == value else "—"


def saturation_text(reading: Saturation | None) -> Text:
    if reading is None:
        return Text("saturation: measured on the dev set at each evaluation", "dim")
    text = Text(f"saturation (dev, step {reading.step}): ", "bold")
    for name in reading.low:
        low, high = reading.low[name], reading.high.get(name, float("nan"))
        text.append(f"{visible(name).replace('_', ' ')} ")
        text.append(f"<0.1 {_percent(low)}", "red" if low > SATURATED_SHARE else "")
        text.append(" · ")
        text.append(f">0.9 {_percent(high)}", "red" if high > SATURATED_SHARE else "")
        text.append("   ")
    share = reading.hidden_saturated
    text.append("|h|>0.99 ")
    text.append(_percent(share), "bold red" if share > SATURATED_SHARE else "bold")
    return text


class SaturationLine(Static):
    DEFAULT_CSS = """
    SaturationLine { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._shown: Saturation | None | bool = False

    def show(self, reading: Saturation | None) -> None:
        if reading is not self._shown:
            self._shown = reading
            self.update(saturation_text(reading))
