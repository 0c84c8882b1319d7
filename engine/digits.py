"""Reading a digit sequence typed by a user: shared by the engine and the TUI's console.

Pure Python, so the TUI can check its console input without loading torch or NumPy.
"""

from __future__ import annotations


def parse_digits(text: str, length: int | None = None) -> list[int]:
    """Parse "6 7 0 0 1" (also "67001" or "6,7,0") into digits; ValueError with a one-line reason."""
    cleaned = text.replace(",", " ").split()
    if len(cleaned) == 1 and len(cleaned[0]) > 1:
        cleaned = list(cleaned[0])
    if not cleaned:
        raise ValueError("type a digit sequence, e.g. 6 7 0 0 1 (the model predicts 6+7)")
    digits = []
    for token in cleaned:
        if len(token) != 1 or not token.isdigit() or not token.isascii():
            raise ValueError(f"{token!r} is not a digit 0-9: type digits separated by spaces, e.g. 6 7 0 0 1")
        digits.append(int(token))
    if len(digits) < 2:
        raise ValueError("type at least two digits: the label is the sum of the first two")
    if length is not None and len(digits) > length:
        raise ValueError(f"at most {length} digits, not {len(digits)} (the model reads sequences of length {length})")
    return digits


def pad_digits(digits: list[int], length: int) -> list[int]:
    """Zeros after the typed digits, up to the length the model was trained on (as the data are)."""
    return digits + [0] * max(0, length - len(digits))
