"""The reliability suite: every bad input and fault of issue 12, as a user or an attacker meets it.

Each case runs a command (in this process through ``cli.main`` where that is the same, in a subprocess
or a terminal where signals, pipes or a screen are the point) and checks what a user would: the exit
code, exactly one line on stderr, no traceback, every file that existed before left as it was, and no
control character reaching the terminal. Each verdict is also counted; the counts are printed at the
end of the session:

    .venv/bin/python -m pytest tests/reliability -q
"""

from __future__ import annotations

import collections
import hashlib
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass, field

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from engine.text import has_control  # noqa: E402

CLI = [sys.executable, "-m", "rnnlab_tui"]
_VERDICTS = pytest.StashKey[list]()


@dataclass
class Result:
    code: int
    out: str
    err: str
    traceback: bool = False


@dataclass
class Verdict:
    name: str
    code: int
    traceback: bool
    err_lines: int
    files_changed: list[str] = field(default_factory=list)
    escapes: int = 0


def cli(args: list[str], capsys) -> Result:
    """``rnnlab-tui ARGS`` in this process (torch is imported once for the whole suite)."""
    from rnnlab_tui.cli import main

    capsys.readouterr()
    crashed = ""
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse
        code = exit_.code if isinstance(exit_.code, int) else 1
    except Exception:  # what the user would see as a traceback
        crashed, code = traceback.format_exc(), 1
    captured = capsys.readouterr()
    err = captured.err + crashed
    return Result(code, captured.out, err, "Traceback" in err)


def run(args: list[str], cwd, timeout: float = 120, env: dict | None = None, **options) -> Result:
    """``python -m rnnlab_tui ARGS`` as a separate process."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **options}
    done = subprocess.run(CLI + args, cwd=cwd, text=True, timeout=timeout, env=environment(cwd, env),
                          errors="replace", **streams)
    return Result(done.returncode, done.stdout or "", done.stderr or "", "Traceback" in (done.stderr or ""))


def environment(home, extra: dict | None = None) -> dict:
    return {**os.environ, "PYTHONPATH": ROOT, "RNNLAB_HOME": str(home), "COLUMNS": "120", **(extra or {})}


def control_characters(text: str) -> int:
    """Control characters other than newline and tab: what could move the cursor, retitle the window."""
    return sum(1 for char in text if has_control(char, lines=True))


class Files:
    """The files under some folders, by content, to show that a command changed none that existed."""

    def __init__(self, *folders) -> None:
        self.folders = [str(folder) for folder in folders]
        self.before = self._hashes()

    def _hashes(self) -> dict[str, str]:
        found = {}
        for folder in self.folders:
            for root, _, names in os.walk(folder):
                for name in names:
                    path = os.path.join(root, name)
                    try:
                        with open(path, "rb") as handle:
                            found[path] = hashlib.sha256(handle.read()).hexdigest()
                    except OSError:
                        found[path] = "unreadable"
        return found

    def changed(self) -> list[str]:
        now = self._hashes()
        return sorted(path for path, digest in self.before.items() if now.get(path) != digest)


@pytest.fixture
def verdict(request):
    """``verdict(result, code, files=None, lines=1)``: records the case, then asserts what a user checks."""
    def check(result: Result, code: int, files: Files | None = None, lines: int | None = 1) -> None:
        err_lines = [line for line in result.err.splitlines() if line.strip()]
        record = Verdict(request.node.nodeid, result.code, result.traceback, len(err_lines),
                         files.changed() if files is not None else [],
                         control_characters(result.out) + control_characters(result.err))
        request.config.stash[_VERDICTS].append(record)
        assert not result.traceback, result.err
        assert result.code == code, f"exit {result.code}, wanted {code}; stderr: {result.err!r}"
        if lines is not None:
            assert len(err_lines) == lines, f"{len(err_lines)} lines on stderr, wanted {lines}: {result.err!r}"
        assert not record.files_changed, f"files changed: {record.files_changed}"
        assert record.escapes == 0, f"control characters reached the terminal: {result.out!r} {result.err!r}"

    return check


def pytest_configure(config) -> None:
    config.stash[_VERDICTS] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    verdicts = config.stash.get(_VERDICTS, [])
    if not verdicts:
        return
    codes = collections.Counter(record.code for record in verdicts)
    spelled = ", ".join(f"exit {code}: {count}" for code, count in sorted(codes.items()))
    user_errors = [record for record in verdicts if record.code == 2]
    terminalreporter.section("reliability")
    terminalreporter.write_line(f"cases {len(verdicts)} · tracebacks {sum(r.traceback for r in verdicts)} · "
                                f"{spelled}")
    terminalreporter.write_line(f"user errors (exit 2) with exactly one stderr line: "
                                f"{sum(r.err_lines == 1 for r in user_errors)}/{len(user_errors)} · "
                                f"files changed {sum(len(r.files_changed) for r in verdicts)} · "
                                f"control characters reaching the terminal {sum(r.escapes for r in verdicts)}")
    terminalreporter.write_line("re-measure: .venv/bin/python -m pytest tests/reliability -q")


# --- what the cases start from -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    """A home with a real run in it: its log, its best and last checkpoints, and a few other files."""
    folder = tmp_path_factory.mktemp("home")
    log = folder / "keep.jsonl"
    result = run(["train", "--headless", "--length", "5", "--epochs", "1", "--events", str(log),
                  "--checkpoint-dir", str(folder / "checkpoints")], cwd=folder)
    assert result.code == 0, result.err
    (folder / "notes.txt").write_text("a text file, not a checkpoint\n")
    (folder / "two.pt").write_bytes(b"PK")
    (folder / "empty.pt").write_bytes(b"")
    (folder / "\x1b]0;pwned\x07.jsonl").write_text("a log whose name retitles the window\n")
    return folder


@pytest.fixture(scope="session")
def last_checkpoint(home) -> str:
    (path,) = [os.path.join(root, name) for root, _, names in os.walk(home / "checkpoints")
               for name in names if name == "last.pt"]
    return path


@pytest.fixture
def place(tmp_path, monkeypatch, home):
    """A fresh working folder (runs/ and checkpoints/ go there) and a watch over the home's files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNLAB_HOME", str(tmp_path))
    return tmp_path


def craft_checkpoint(path, task: str = "lm", vocabulary: list[str] | None = None, edit=None, **options) -> str:
    """A checkpoint written by the engine's own save, of a small untrained model; ``edit(payload)``
    changes the payload before it is saved (and checksummed)."""
    from engine import checkpoint as ckpt
    from engine.config import build_config
    from engine.models import build_model

    if task == "lm":
        vocabulary = vocabulary or ["<unk>", " ", "a", "b", "c"]
        config = build_config(task="lm", hidden=8, embed=4, **options)
    else:
        vocabulary = [str(digit) for digit in range(10)]
        config = build_config(length=5, hidden=8, embed=4, **options)
    model = build_model(config, len(vocabulary))
    payload = {"config": config.to_dict(), "parameters": ckpt.snapshot_parameters(model), "vocabulary": vocabulary,
               "step": 0, "epoch": 1, "batch": 0, "impl": config.impl, "best": None}
    if edit is not None:
        edit(payload)
    ckpt.save(str(path), payload)
    return str(path)
