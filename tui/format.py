"""Number and text formatting shared by the widgets (no textual)."""

from __future__ import annotations

import math

from rich.cells import cell_len, set_cell_size


def sci(value: float | None) -> str:
    """A gradient norm in scientific notation, as the textbook prints it: 7.62e+06."""
    if value is None:
        return "—"
    if not isinstance(value, (int, float)):
        return str(value)[:12]
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2e}"


def short(value: float | None) -> str:
    """A loss, lr or threshold in the fewest characters that stay exact enough."""
    if value is None:
        return "—"
    if not isinstance(value, (int, float)):
        return str(value)[:12]
    if not math.isfinite(value):
        return sci(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def norm_name(norm_type: str) -> str:
    return {"2": "L2", "1": "L1", "inf": "L∞"}.get(str(norm_type), f"L{norm_type}")


def finished_text(finished) -> str:
    """One line for a RunFinished event."""
    parts = [f"run {finished.reason}"]
    if finished.best_dev is not None:
        parts.append(f"best dev {short(finished.best_dev)}")
    if finished.test_accuracy is not None:
        parts.append(f"test accuracy {short(finished.test_accuracy)}")
    if finished.test_perplexity is not None:
        parts.append(f"test perplexity {short(finished.test_perplexity)}")
    if finished.checkpoint:
        parts.append(finished.checkpoint)
    return " · ".join(parts)


def longest_that_fits(wordings: tuple[str, ...], width: int) -> str:
    """The first of ``wordings`` (the longest first) that fits ``width`` cells, else the last one cut."""
    return next((text for text in wordings if cell_len(text) <= width), set_cell_size(wordings[-1], max(0, width)).rstrip())
