"""A terminal that cannot draw the monitor (TERM=dumb) gets the headless trainer, as a pipe does."""

import os
import sys

import pytest

from engine.config import ROOT

pexpect = pytest.importorskip("pexpect")


def _in_a_terminal(args, cwd, term):
    env = {**os.environ, "PYTHONPATH": ROOT, "TERM": term}
    child = pexpect.spawn(sys.executable, ["-m", "rnnlab_tui", *args], cwd=str(cwd), env=env, encoding="utf-8",
                          timeout=120, dimensions=(24, 80))
    output = child.read()  # until it exits
    child.close()
    return child.exitstatus, output


def test_train_in_a_dumb_terminal_prints_the_textbook_lines(tmp_path):
    status, output = _in_a_terminal(["train", "--epochs", "1"], tmp_path, "dumb")
    assert status == 0, output
    assert "[Train] epoch: 1/1, step: 5/5" in output and "[Log] runs" in output
    assert "\x1b[?1049h" not in output  # the full-screen app never took the terminal


def test_watch_in_a_dumb_terminal_is_one_line(tmp_path):
    log = tmp_path / "run.jsonl"
    log.write_text('{"type":"run_started","run":"x","step":0,"t":0.0}\n')
    status, output = _in_a_terminal(["watch", str(log)], tmp_path, "dumb")
    assert status == 2 and len(output.strip().splitlines()) == 1
    assert "not one (or TERM is dumb)" in output
