"""What every command shares: a failure in one line, where files go by default, the log a name
means, and whether standard output is a terminal the monitor can draw on."""

from __future__ import annotations

import os
import sys

from engine.text import visible

EXIT_USAGE = 2


def home_help(folder: str) -> str:
    return f"default ./{folder}, or $RNNLAB_HOME/{folder} when RNNLAB_HOME is set"


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """One line on stderr (what it quotes of the user's input shown, never obeyed); the exit code."""
    print(f"rnnlab-tui: {visible(message)}", file=sys.stderr)
    return code


def terminal_can_draw() -> bool:
    """Standard output is a terminal the full-screen monitor can draw on: TERM names one that can move
    the cursor (not ``dumb``, as in Emacs shells and some CI consoles)."""
    return sys.stdout.isatty() and os.environ.get("TERM", "") not in ("", "dumb")


def quiet_stdout() -> None:
    """Point standard output at /dev/null: what is still buffered for a reader that has gone would
    otherwise end the process with a traceback about a broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
