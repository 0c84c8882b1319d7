"""The errors a user can cause, and how each is said in one line."""

from __future__ import annotations

from .checkpoint import CheckpointError, CheckpointWriteError
from .config import ConfigError
from .data import DataError
from .stream import LogWriteError

USER_ERRORS = (ConfigError, DataError, CheckpointError)


def describe(error: BaseException) -> str:
    """One line for the user: the message of an error they caused, else the error's type and text."""
    if isinstance(error, USER_ERRORS + (LogWriteError, CheckpointWriteError)):
        return str(error)
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
