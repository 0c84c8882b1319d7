"""The engine never imports textual; the command line's parsing imports neither torch nor textual."""

import subprocess
import sys

from engine.config import ROOT


def loaded_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    output = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(output.stdout.split())


def test_engine_does_not_load_textual():
    modules = loaded_after("import engine.runner, engine.session, engine.headless, engine.heatmap, engine.child")
    assert "torch" in modules
    assert "textual" not in modules


def test_parsing_the_command_line_loads_neither_torch_nor_textual():
    modules = loaded_after("from rnnlab_tui.cli import make_parser; make_parser().parse_args(['train', '--lr', '0.2'])")
    assert "torch" not in modules and "textual" not in modules
