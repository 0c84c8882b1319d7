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
from rich.text import Span, Text
from textual.strip import Strip
from textual.widget import Widget

from engine.events import Gates

RAMP = " .:-=+*#%@"
SIGMOID_GATES = {"input_gate", "forget_gate", "output_gate", "reset_gate", "update_gate"}
ORDER = ("input_gate", "forget_gate", "output_gate", "cell_state", "reset_gate", "update_gate",
         "candidate", "hidden")
GAP = 3
BLOCK_HEAD = 3  # lines above a block's units: its name, its range, the token labels
MIN_BLOCK_WIDTH = 12  # "-1.66..+1.92": a block's range stays readable under a short input
MIN_UNITS = 4  # units a block row should show before another row of blocks is worth its room
SHOWN_TOKENS = {" ": "␣"}  # a space of a text prefix would be an invisible column label
ALL_UNITS = 100_000  # lines offered to the layout: every unit is drawn, the panel scrolls
DRAWINGS_KEPT = 8  # gates (at a width) whose lines are kept
SATURATED = 0.99  # |h| above this: a saturated tanh unit (its derivative is under 0.02)


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


def render_gate(name: str, matrix: list[list[float]], tokens: list[str], column: int,
                units_shown: int | None = None, named: bool = True) -> list[Text]:
    """One gate as lines: title (unless the panel's title names the one block: the SRN's hidden state),
    legend, token labels, then one line per hidden unit (the first ``units_shown`` of them; the legend's
    range is of them all)."""
    low, high, actual_low, actual_high = _range(name, matrix)
    signed = low < 0
    span = (high - low) or 1.0
    label = len(f"h{len(matrix) - 1}") if matrix else 2
    width = block_width(len(matrix), len(tokens), column)
    lines = [Text(name.replace("_", " ")[:width].ljust(width), "bold")] if named else []
    lines.append(Text(f"{actual_low:+.2f}..{actual_high:+.2f}"[:width].ljust(width), "dim"))
    header = Text(" " * (label + 1))
    for token in tokens:
        token = SHOWN_TOKENS.get(str(token), str(token))
        header.append(token + " " * max(0, column - cell_len(token)), "bold underline")
    lines.append(header)
    for unit, row in enumerate(matrix[:units_shown]):
        lines.append(_unit_line(f"h{unit}".rjust(label) + " ", row[: len(tokens)], low, span, column, signed))
    return [line_pad(line, width) for line in lines]


def _unit_line(label: str, row: list, low: float, span: float, column: int, signed: bool) -> Text:
    """One hidden unit: a ramp character per time step, the cells of one shade sharing one span (the
    line is built as one string and its spans: appending to a Text costs more than the arithmetic)."""
    levels = len(RAMP)
    cells, spans = [], []
    at = start = len(label)
    run_level = None
    for value in row:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            level = -1
        else:
            level = min(levels - 1, int(min(1.0, max(0.0, (value - low) / span)) * levels))
        if level != run_level and run_level is not None:
            spans.append(Span(start, at, _level_style(run_level, signed)))
            start = at
        cells.append("!".ljust(column) if level < 0 else RAMP[level] * column)
        at += column
        run_level = level
    if run_level is not None:
        spans.append(Span(start, at, _level_style(run_level, signed)))
    return Text(label + "".join(cells), "dim", spans=spans)


def block_width(units: int, steps: int, column: int) -> int:
    """Unit labels and one column per time step, at least as wide as a name and its range."""
    return max(MIN_BLOCK_WIDTH, len(f"h{max(0, units - 1)}") + 1 + column * steps)


def line_pad(line: Text, width: int) -> Text:
    padding = width - line.cell_len
    if padding > 0:
        line.append(" " * padding)
    return line


def saturated_share(matrix: list[list[float]], bound: float = SATURATED) -> float | None:
    """The share of hidden values with |h| > bound: tanh units whose derivative is under 1 - bound²."""
    values = [value for row in matrix if isinstance(row, list) for value in row
              if isinstance(value, (int, float)) and math.isfinite(value)]
    return sum(1 for value in values if abs(value) > bound) / len(values) if values else None


class GateHeatmaps(Widget):
    """Draws a Gates event's matrices side by side, wrapping to the widget's width, every hidden unit
    (the panel around it scrolls)."""

    DEFAULT_CSS = """
    GateHeatmaps { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gates: Gates | None = None
        # the last few gates drawn, by (id, width): overlaid runs each show their own
        self._drawings: dict[tuple[int, int], tuple[Gates | None, list[Text], dict[int, Strip]]] = {}

    def show(self, gates: Gates | None) -> None:
        if gates is self.gates:
            return
        before = self.gates
        self.gates = gates
        # a new layout only when the panel's height can change (other units, gates or input length)
        same_shape = before is not None and gates is not None and _shape(before) == _shape(gates)
        self.refresh(layout=not same_shape)

    @property
    def column_labels(self) -> list[str]:
        return [str(token) for token in self.gates.tokens] if self.gates else []

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._drawn(width or 80)[0])

    def render_line(self, y: int) -> Strip:
        """A line of the panel. Its lines are laid out once per gates and width, and each is converted
        to a strip once, when it is first in view: hundreds of cells in their own colours cost tens of
        milliseconds to convert, too much to repeat for every frame or for the units scrolled away."""
        width = self.size.width or 80
        lines, strips = self._drawn(width)
        if y >= len(lines):
            return Strip.blank(width, self.rich_style)
        strip = strips.get(y)
        if strip is None:
            segments = list(lines[y].render(self.app.console, end=""))
            strip = strips[y] = Strip(segments).adjust_cell_length(width).apply_style(self.rich_style)
        return strip

    def _drawn(self, width: int) -> tuple[list[Text], dict[int, Strip]]:
        """The lines of the shown gates at ``width``, and those of them converted to strips so far."""
        key = (id(self.gates), width)
        cached = self._drawings.get(key)
        if cached is not None and cached[0] is self.gates:
            return cached[1], cached[2]
        lines = self._lines(width, ALL_UNITS)
        for line in lines:
            line.truncate(width)
        if len(self._drawings) >= DRAWINGS_KEPT:
            del self._drawings[next(iter(self._drawings))]  # the oldest
        self._drawings[key] = (self.gates, lines, {})
        return lines, self._drawings[key][2]

    def render(self) -> Text:
        """The panel as one text (what render_line draws, line by line)."""
        text = Text("\n").join(self._drawn(self.size.width or 80)[0])
        text.no_wrap, text.overflow = True, "crop"  # a block wider than the panel is cut, not wrapped
        return text

    def _lines(self, width: int, height: int) -> list[Text]:
        """The blocks side by side, wrapped to ``width``, showing as many hidden units as fit ``height``."""
        gates = self.gates
        if gates is None or not gates.matrices:
            return [Text("gate heatmaps appear at the first evaluation (g refreshes them)", "dim")]
        tokens = [str(token) for token in gates.tokens]
        widest = max((cell_len(SHOWN_TOKENS.get(token, token)) for token in tokens), default=1)
        names = sorted(gates.matrices, key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER))
        matrices = [(name, gates.matrices[name]) for name in names]
        matrices = [(name, matrix) for name, matrix in matrices
                    if isinstance(matrix, list) and all(isinstance(row, list) for row in matrix)]
        if not matrices:
            return [Text("gate matrices could not be read", "dim")]
        # lay the blocks out in rows first (a block's width does not depend on how many units it shows)
        rows: list[list[tuple[str, list]]] = []
        used = 0
        for name, matrix in matrices:
            needed = block_width(len(matrix), len(tokens), widest)
            if rows and used + GAP + needed <= width:
                rows[-1].append((name, matrix))
                used += GAP + needed
            else:
                rows.append([(name, matrix)])
                used = needed
        units = max(len(matrix) for _, matrix in matrices)
        named = gates.cell != "srn"  # the SRN's one block is the hidden state the title names
        head = BLOCK_HEAD if named else BLOCK_HEAD - 1
        left_out: list[str] = []
        while len(rows) > 1 and (height - 1) // len(rows) - head < min(units, MIN_UNITS):
            left_out[:0] = [name for name, _ in rows.pop()]  # a short panel: fewer blocks, not 1 unit each
        shown = max(1, min(units, (height - 1) // len(rows) - head))
        digits = all(token.isdigit() for token in tokens)
        shown_input = " ".join(tokens) if digits else f'"{"".join(tokens)}"'
        console = "" if gates.request in ("", "probe") else " (console)"
        # beside the subject: (long, short, style), the first most important; the step says which weights
        notes: list[tuple[str, str, str]] = [(f" · step {gates.step}", f" · step {gates.step}", "italic")]
        if gates.cell == "srn":  # the SRN has no gates: its heatmap is the hidden state h_t
            subject = "SRN hidden state h_t"
            hidden = gates.matrices.get("hidden")
            share = saturated_share(hidden) if isinstance(hidden, list) else None
            if share is not None:
                notes.append((f" · {share:.0%} saturated (|h| > {SATURATED:g})", f" · {share:.0%} saturated",
                              "bold" if share > 0.5 else "italic"))
        else:
            subject = f"{gates.cell.upper()} gates and states"
        if shown < units:
            note = f" · h0-h{shown - 1} of {units}"
            notes.append((note, note, "italic"))
        if left_out:
            note = f" · {', '.join(name.replace('_', ' ') for name in left_out)}: no room"
            notes.append((note, note, "italic"))
        title = _title(subject, f" for {shown_input}{console}", console, notes, width)
        lines = [title]
        for row in rows:
            lines.extend(_join([render_gate(name, matrix, tokens, widest, shown, named) for name, matrix in row]))
        return lines


def _title(subject: str, on_input: str, console: str, notes: list[tuple[str, str, str]], width: int) -> Text:
    """The heatmaps' title in the longest wording that fits ``width``: the ramp's legend goes first,
    then the notes' details, then the input (the columns are labelled with it anyway)."""
    ramp = f" · ramp '{RAMP}' low→high"
    longs, shorts = [long for long, _, _ in notes], [short for _, short, _ in notes]
    wordings = [(on_input, longs, ramp), (on_input, longs, ""), (on_input, shorts, ""), (console, shorts, "")]
    for on, parts, legend in wordings:
        if cell_len(subject + on + "".join(parts) + legend) <= width:
            break
    title = Text(subject + on, "italic")
    for part, (_, _, style) in zip(parts, notes):
        title.append(part, style)
    title.append(legend, "italic dim")
    return title


def _shape(gates: Gates) -> tuple:
    return (len(gates.tokens), gates.cell, tuple((name, len(matrix)) for name, matrix in gates.matrices.items()
                                                 if isinstance(matrix, list)))


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
