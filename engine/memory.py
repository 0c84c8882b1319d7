"""Keeping freed memory for the next step instead of handing it back to the system.

A training step allocates the same tensors every time, several of them larger than glibc's threshold
for serving an allocation from its own pages (``mmap``). Each of those comes back from the system as
fresh pages, and the first write to each page is a page fault: about a hundred per forward+backward of
the scratch LSTM at batch 64, a sixth of its time. Raising the thresholds keeps such blocks in the
heap, where the next step finds them already mapped. PyTorch's own kernels (oneDNN) keep workspaces
and are not affected.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters in glibc's malloc.h
_done = False


def keep_freed_memory(limit: int = 64 << 20) -> bool:
    """Serve blocks up to ``limit`` bytes from the heap and keep up to twice that free in it; True if
    the C library took the settings (glibc on Linux), False where it has no ``mallopt``."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * limit))
    return _done
