"""The real command in a real terminal (tmux, 120x40 and 80x24): the explosion told and the run paused
at it, `c` clips and continues, the story stays, `q` leaves the terminal clean and the run log complete."""

import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SESSION = f"rnnlab-e2e-{os.getpid()}"

# The installed script beside this interpreter: tmux runs commands with its server's PATH, which
# need not hold the virtual environment.
SCRIPT = os.path.join(os.path.dirname(sys.executable), "rnnlab-tui")

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not os.path.exists(SCRIPT), reason="the rnnlab-tui script is not installed (pip install -e .)"),
]


def _send(keys: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", SESSION, keys], check=True)


def _screen() -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", SESSION], capture_output=True, text=True).stdout


def _wait_for(predicate, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen()
        if predicate(screen):
            return screen
        time.sleep(0.05)
    raise AssertionError(f"timed out; the screen was:\n{_screen()}")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_explosion_pause_clip_and_clean_quit(tmp_path, size):
    runs = tmp_path / "runs"  # the run log goes to runs/ under the working directory
    done = tmp_path / "exit-code"
    command = f"cd {tmp_path} && {SCRIPT} train --cell srn --lr 0.2; echo $? > {done}; sleep 30"
    start = time.monotonic()
    subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", str(size[0]), "-y", str(size[1]), command],
                   check=True)
    try:
        screen = _wait_for(lambda s: "exploded" in s and "c clip and continue" in s, timeout=60)
        print(f"explosion told and paused after {time.monotonic() - start:.2f} s")
        story = next(line for line in screen.splitlines() if "exploded" in line)
        assert "step 3: ‖∇" in story and "(×" in story
        assert "paused" in screen.splitlines()[1]
        footer = [line for line in screen.splitlines() if line.strip()][-1]
        assert footer.startswith("? help q quit"), footer
        _send("c")  # clip and continue
        _wait_for(lambda s: "clip ON" in s.splitlines()[0] and "running" in s.splitlines()[1], timeout=15)
        screen = _wait_for(lambda s: re.search(r"marks +[▲▼p ]*c", s), timeout=15)  # clip marked at its step
        assert "step 3: ‖∇" in screen  # continuing dismissed nothing
        _send("q")
        deadline = time.monotonic() + 20
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert done.read_text().strip() == "0"  # q is the stop the user asked for, a normal end
        screen = _screen()
        assert "exploded" not in screen and "resume" in screen  # the alternate screen is gone; how to resume
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    logs = glob.glob(str(runs / "*.jsonl*"))
    assert [os.path.basename(log)[-9:] for log in logs] == [".jsonl.gz"], "the finished log is not compressed"
    with gzip.open(logs[0], "rt", encoding="utf-8") as handle:
        events = [json.loads(line) for line in handle]  # every line parses
    last = events[-1]
    assert last["type"] == "run_finished" or (last["type"] == "status" and last["state"] == "stopped")
