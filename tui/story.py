"""The run's story in words, built from its alarms (no textual): what exploded, when, by how much,
and what became of the gradients after. The timeline shows every alarm; the first explosion is never
left out, however many come after it.
"""

from __future__ import annotations

import math

from engine.events import Alarm

KIND_STYLES = {"explosion": "bold white on dark_red", "non_finite": "bold white on magenta",
               "saturation": "bold black on yellow", "healthy": "bold green"}
MARKS = {"explosion": "▲", "non_finite": "!", "saturation": "▼", "healthy": "✓"}


def compact(value: float | None, digits: int = 3) -> str:
    """A norm in the fewest characters a reader needs: 86.7, 0.0312, 1.02e7, 0."""
    if value is None:
        return "—"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if 1 <= abs(value) < 1e3:  # every digit of the whole part: ×114, not ×1.1e+02
        return f"{value:.{max(digits, len(str(int(abs(value)))))}g}"
    if 1e-2 <= abs(value) < 1:
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def units_word(cell: str) -> str:
    """What saturates: the SRN's tanh units, the LSTM's and GRU's gates."""
    return "tanh units" if cell == "srn" else "gates"


def fragment(alarm: Alarm, cell: str = "srn") -> str:
    """One alarm as a clause of the story: its step, parameter, value and ratio."""
    name = f"‖∇{alarm.parameter}‖" if alarm.parameter else "the gradients"
    if alarm.kind == "explosion":
        # the alarm compares with the recent median, not with the step before: say so
        before = f"median {compact(alarm.median)} → " if alarm.median else ""
        return f"step {alarm.step}: {name} {before}{compact(alarm.value)} (×{compact(alarm.ratio, 2)}) exploded"
    if alarm.kind == "non_finite":
        return f"step {alarm.step}: {name} {compact(alarm.value)}, update skipped"
    if alarm.kind == "saturation":
        fell = f"peak {compact(alarm.median)} → " if alarm.median else ""
        ratio = f" (×{compact(alarm.ratio, 1)})" if alarm.ratio else ""
        return f"step {alarm.step}: {name} {fell}{compact(alarm.value)}{ratio}, {units_word(cell)} saturated"
    if alarm.kind == "healthy":
        return f"step {alarm.step}: healthy again" + (f" ({alarm.message})" if alarm.message else "")
    return f"step {alarm.step}: {alarm.kind} {name} {compact(alarm.value)}"


def chapters(alarms: list[Alarm], room: int) -> tuple[list[Alarm], int]:
    """At most ``room`` alarms to tell, in step order, and how many were left out.

    The first explosion (or, failing one, the first alarm) always stays; the rest of the room goes to
    the newest alarms, so the story reads from its beginning to where the run is now.
    """
    if len(alarms) <= room:
        return list(alarms), 0
    room = max(1, room)
    first = next((alarm for alarm in alarms if alarm.kind in ("explosion", "non_finite")), alarms[0])
    newest = [alarm for alarm in alarms if alarm is not first][-(room - 1):] if room > 1 else []
    kept = sorted([first, *newest], key=lambda alarm: alarm.step)
    return kept, len(alarms) - len(kept)


def first_explosion(alarms: list[Alarm]) -> Alarm | None:
    return next((alarm for alarm in alarms if alarm.kind == "explosion"), None)
