"""Gate heatmaps: rows = hidden units, columns = time steps labelled by the input tokens.

Each cell is a character of a shading ramp (readable without colour, e.g. under NO_COLOR) drawn in
a colour of the same scale. Gates squashed by a sigmoid share the fixed range [0, 1]; the cell
state and hidden state are signed and use a range symmetric around zero.
"""

from __future__ import annotations

import functools
import math

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from engine.events import Gates

RAMP = " .:-=+*#%@"
SIGMOID_GATES = {"input_gate", "forget_gate", "output_gate", "reset_gate", "update_gate"}
ORDER = ("input_gate", "forget_gate", "output_gate", "cell_state", "reset_gate", "update_gate",
         "candidate", "hidden")
GAP = 3


def _range(name: str, matrix: list[list[float]]) -> tuple[float, float, float, float]:
    """(shown low, shown high, actual min, actual max) of one gate's matrix."""
    finite = [value for row in matrix for value in row if isinstance(value, (int, float)) and math.isfinite(value)]
    actual_low = min(finite) if finite else 0.0
    actual_high = max(finite) if finite else 0.0
    if name in SIGMOID_GATES:
        return 0.0, 1.0, actual_low, actual_high
    bound = max(abs(actual_low), abs(actual_high), 1e-9)
    if name in ("hidden", "candidate"):
        bound = max(bound, 1.0) if bound > 0.5 else bound
    return -bound, bound, actual_low, actual_high


def _style(fraction: float, signed: bool) -> Style:
    if signed:  # blue (negative) through grey to red (positive)
        if fraction < 0.5:
            strength = (0.5 - fraction) * 2
            return Style(color=f"rgb({int(90 - 40 * strength)},{int(110 + 30 * strength)},{int(150 + 105 * strength)})")
        strength = (fraction - 0.5) * 2
        return Style(color=f"rgb({int(150 + 105 * strength)},{int(110 - 40 * strength)},{int(90 - 40 * strength)})")
    level = int(60 + 195 * fraction)  # dark to bright yellow-green
    return Style(color=f"rgb({level},{level},{int(level * 0.4)})")


@functools.lru_cache(maxsize=None)
def _level_style(level: int, signed: bool) -> Style:
    if level < 0:
        return Style(color="red", bold=True)
    return _style((level + 0.5) / len(RAMP), signed)


def render_gate(name: str, matrix: list[list[float]], tokens: list[str], column: int) -> list[Text]:
    """One gate as lines: title, legend, token labels, then one line per hidden unit."""
    low, high, actual_low, actual_high = _range(name, matrix)
    signed = low < 0
    span = (high - low) or 1.0
    units = len(matrix)
    label = len(f"h{units - 1}") if units else 2
    width = label + 1 + column * len(tokens)
    lines = [Text(name.replace("_", " ")[:width].ljust(width), "bold"),
             Text(f"{actual_low:+.2f}..{actual_high:+.2f}"[:width].ljust(width), "dim")]
    header = Text(" " * (label + 1))
    for token in tokens:
        token = str(token)
        header.append(token + " " * max(0, column - cell_len(token)), "bold underline")
    lines.append(header)
    levels = len(RAMP)
    for unit, row in enumerate(matrix):
        line = Text(f"h{unit}".rjust(label) + " ", "dim")
        run, run_level = [], None  # cells of one shade share one span
        for value in row[: len(tokens)]:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                level = -1
            else:
                level = min(levels - 1, int(min(1.0, max(0.0, (value - low) / span)) * levels))
            if level != run_level and run:
                line.append("".join(run), _level_style(run_level, signed))
                run = []
            run.append("!".ljust(column) if level < 0 else RAMP[level] * column)
            run_level = level
        if run:
            line.append("".join(run), _level_style(run_level, signed))
        lines.append(line)
    return [line_pad(line, width) for line in lines]


def line_pad(line: Text, width: int) -> Text:
    padding = width - line.cell_len
    if padding > 0:
        line.append(" " * padding)
    return line


class GateHeatmaps(Widget):
    """Draws a Gates event's matrices side by side, wrapping to the widget's width."""

    DEFAULT_CSS = """
    GateHeatmaps { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gates: Gates | None = None
        self._height = 1

    def show(self, gates: Gates | None) -> None:
        if gates is self.gates:
            return
        self.gates = gates
        self.refresh(layout=True)

    @property
    def column_labels(self) -> list[str]:
        return [str(token) for token in self.gates.tokens] if self.gates else []

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines(width))

    def render(self) -> Text:
        width = self.size.width or 80
        lines = self._lines(width)
        for line in lines:
            line.truncate(width)
        text = Text("\n").join(lines)
        text.no_wrap, text.overflow = True, "crop"  # a block wider than the panel is cut, not wrapped
        return text

    def _lines(self, width: int) -> list[Text]:
        gates = self.gates
        if gates is None or not gates.matrices:
            return [Text("gate heatmaps appear at the first evaluation (g refreshes them)", "dim")]
        tokens = [str(token) for token in gates.tokens]
        widest = max((cell_len(token) for token in tokens), default=1)
        names = sorted(gates.matrices, key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER))
        blocks: list[list[Text]] = []
        for name in names:
            matrix = gates.matrices[name]
            if isinstance(matrix, list) and all(isinstance(row, list) for row in matrix):
                blocks.append(render_gate(name, matrix, tokens, widest))
        if not blocks:
            return [Text("gate matrices could not be read", "dim")]
        lines: list[Text] = [Text(f"gates of {gates.cell.upper()} for input: {' '.join(tokens)}"
                                  + ("" if gates.request in ("", "probe") else "  (console)")
                                  + f"   ramp '{RAMP}' low→high", "italic")]
        row: list[list[Text]] = []
        used = 0
        for block in blocks:
            block_width = block[0].cell_len
            if row and used + GAP + block_width > width:
                lines.extend(_join(row))
                row, used = [], 0
            row.append(block)
            used += block_width + (GAP if used else 0)
        lines.extend(_join(row))
        return lines


def _join(blocks: list[list[Text]]) -> list[Text]:
    height = max(len(block) for block in blocks)
    joined = []
    for index in range(height):
        line = Text()
        for position, block in enumerate(blocks):
            if position:
                line.append(" " * GAP)
            if index < len(block):
                line.append_text(block[index])
            else:
                line.append(" " * block[0].cell_len)
        joined.append(line)
    return joined
