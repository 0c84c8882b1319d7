"""The monitor never loads torch: not from tui.app, not from tui.main, not through engine.events."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_tui_does_not_import_torch():
    code = ("import sys, tui.app, tui.main, tui.sources, tui.bench; "
            "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
