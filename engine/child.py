"""The engine as a child process: ``python -m engine.child CONFIG_JSON``.

Events go to standard output, one JSON line each; commands arrive as JSON lines on standard input;
errors go to standard error. This is what the TUI starts.
"""

import sys

from .session import child_main

if __name__ == "__main__":
    sys.exit(child_main())
