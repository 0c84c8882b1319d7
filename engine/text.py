"""Text from files, streams and the command line, made safe to show in a terminal. Pure Python.

A checkpoint's vocabulary, a log's notice, a file name or a prefix can hold control characters: an
escape sequence in them would retitle the window, hide the cursor or clear the screen. Each control
character is shown as the symbol Unicode draws for it (ESC as ␛, NUL as ␀, DEL as ␡), the C1 controls
and the characters that reorder text (bidi overrides) as ``<U+009B>``, and a byte of a command-line
argument that is not UTF-8 as ``<0x9B>``. Both the engine's command line and
the TUI use this, so the two show the same.
"""

from __future__ import annotations

_PICTURES = {code: chr(0x2400 + code) for code in range(0x20)}  # ␀ .. ␟ (U+2400 block)
_PICTURES[0x7F] = "\u2421"  # ␡
# C1 controls (0x9B is a one-byte CSI) and the bidi controls that can make text read other than it runs
_NAMED = {code: f"<U+{code:04X}>" for code in (*range(0x80, 0xA0), 0x061C, 0x200E, 0x200F,
                                               *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
# Lone surrogates are no text: Python makes each byte of a command-line argument that is not UTF-8 one of
# U+DC80..U+DCFF, which a terminal would receive as the raw byte again (0x9B: the one-byte CSI)
_NAMED.update({code: f"<U+{code:04X}>" for code in range(0xD800, 0xE000)})
_NAMED.update({code: f"<0x{code - 0xDC00:02X}>" for code in range(0xDC80, 0xDD00)})
_SINGLE_LINE = str.maketrans({**_PICTURES, **_NAMED})
_MULTI_LINE = str.maketrans({**{code: picture for code, picture in _PICTURES.items() if code not in (0x09, 0x0A)},
                             **_NAMED})


def visible(text: object, lines: bool = False) -> str:
    """``text`` with every control character shown as a visible symbol (``str()`` of anything else).

    ``lines``: keep newlines and tabs (generated text, a multi-line listing); otherwise the result is
    one line, a newline shown as ␊.
    """
    return str(text).translate(_MULTI_LINE if lines else _SINGLE_LINE)


def has_control(text: str, lines: bool = False) -> bool:
    """Whether ``text`` holds a character that ``visible`` would replace."""
    return visible(text, lines) != text


def visible_fields(record, lines: tuple[str, ...] = (), numbers: tuple[str, ...] = ()):
    """A dataclass ``record`` (an event) with ``visible`` applied to every string in it, keys of
    nested dictionaries included; the fields named in ``lines`` keep their newlines, and those named
    in ``numbers`` (dictionaries of numeric arrays) have only their keys looked at. The record itself
    when nothing had to change."""
    from dataclasses import fields, replace

    changes = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if field.name in numbers and isinstance(value, dict):
            shown = {visible(key): item for key, item in value.items()}
            if list(shown) == list(value):
                continue
        else:
            shown = _visible_value(value, field.name in lines)
            if shown is value:
                continue
        changes[field.name] = shown
    return replace(record, **changes) if changes else record


def _visible_value(value, lines: bool):
    """``value`` made visible (strings, and the strings inside lists and dicts); the same object when
    it held nothing to change."""
    if isinstance(value, str):
        shown = visible(value, lines)
        return value if shown == value else shown
    if isinstance(value, list):
        items = [_visible_value(item, lines) for item in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    if isinstance(value, dict):
        items = {_visible_value(key, lines): _visible_value(item, lines) for key, item in value.items()}
        same = all(a is b for a, b in zip(items, value)) and all(a is b for a, b in zip(items.values(), value.values()))
        return value if same and len(items) == len(value) else items
    return value
