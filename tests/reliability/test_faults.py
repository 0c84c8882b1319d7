"""Faults the user did not cause: a killed process, a signal, a full disk, two runs on one log, a dead
engine under the TUI, a terminal that cannot draw. Each ends in one line and a non-zero exit (or, for a
stop the user asked for, exit 130), with the log complete and the checkpoints loadable."""

import errno
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch

from engine import checkpoint as ckpt

from .conftest import CLI, Files, Result, cli, environment, run
from .test_injection import terminal, terminal_environment

SLOW_RUN = ["train", "--headless", "--length", "5", "--epochs", "400", "--speed", "300"]


def _start(args: list[str], cwd, **options) -> subprocess.Popen:
    return subprocess.Popen(CLI + args, cwd=cwd, env=environment(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def _wait_for_steps(log, count: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count('"type":"step"') >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError(f"no {count} steps in {timeout} s")


def _events(log) -> list[dict]:
    """Every line of the log that ends in a newline: each must be a complete JSON event. A run stopped
    by a full disk may leave a last line without one, cut at any byte (even just after a ``}``)."""
    complete = log.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in complete]


def _checkpoints(folder) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]


@pytest.mark.parametrize("steps", [3, 60])
def test_kill_9_leaves_a_readable_log_and_loadable_checkpoints(steps, place):
    log = place / "run.jsonl"
    process = _start(SLOW_RUN + ["--events", str(log), "--checkpoint-dir", str(place / "ck")], place)
    _wait_for_steps(log, steps, process)
    process.kill()
    process.communicate(timeout=30)
    events = _events(log)
    assert events[0]["type"] == "run_started" and len([e for e in events if e["type"] == "step"]) >= steps - 1
    # a write cut by the kill leaves its temporary file (nothing can remove it); what it was to
    # replace is intact
    for path in _checkpoints(place / "ck"):
        if path.endswith(".pt"):
            ckpt.load(path)  # verified by its checksum


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_quickly_with_a_complete_log(signum, place, verdict):
    log = place / "run.jsonl"
    process = _start(SLOW_RUN + ["--events", str(log), "--checkpoint-dir", str(place / "ck")], place)
    _wait_for_steps(log, 30, process)
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 5.0
    verdict(Result(process.returncode, out, err, "Traceback" in err), 130, lines=0)
    events = _events(log)
    assert events[-1]["type"] == "run_finished" and events[-1]["reason"] == "stopped"
    assert ckpt.load(events[-1]["checkpoint"])["step"] == max(e["step"] for e in events if e["type"] == "step")


def _small_files(limit: int):
    def apply() -> None:  # in the child: writes past ``limit`` bytes fail (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_checkpoint_that_cannot_be_written_ends_the_run_in_one_line(place, home, verdict):
    """The disk fills before the first checkpoint (12 KB of room, a checkpoint needs 16): exit 1, one
    line, no temporary file, and the log still ends with run_finished."""
    log = place / "run.jsonl"
    files = Files(home)
    result = run(["train", "--headless", "--length", "5", "--epochs", "3", "--events", str(log),
                  "--checkpoint-dir", str(place / "ck")], cwd=place, preexec_fn=_small_files(12_000))
    verdict(result, 1, files)
    assert "cannot write the checkpoint" in result.err
    assert "File too large" in result.err or "No space left" in result.err
    assert not [path for path in _checkpoints(place) if ".tmp" in path]
    events = _events(log)
    assert events[-1]["type"] == "run_finished" and events[-1]["reason"] == "failed"


class _FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes left: a write past them fails as on a full disk."""

    room = 4096

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def _fill_the_disk(monkeypatch) -> None:
    monkeypatch.setattr(ckpt, "open", lambda path, mode: io.BufferedWriter(_FullDisk(path, "w")), raising=False)


def test_a_full_disk_keeps_the_previous_checkpoint(place, monkeypatch):
    path = place / "best.pt"
    ckpt.save(str(path), {"step": 1})
    before = path.read_bytes()
    _fill_the_disk(monkeypatch)
    with pytest.raises(OSError, match=f"^cannot write the checkpoint {re.escape(str(path))}: No space left on device$"):
        ckpt.save(str(path), {"step": 2, "weights": torch.zeros(4096)})
    assert path.read_bytes() == before and os.listdir(place) == ["best.pt"]


def test_a_full_disk_under_a_run_is_one_line_naming_the_checkpoint(place, home, capsys, monkeypatch, verdict):
    files = Files(home)
    _fill_the_disk(monkeypatch)
    result = cli(["train", "--headless", "--length", "5", "--epochs", "1", "--events", str(place / "run.jsonl"),
                  "--checkpoint-dir", str(place / "ck")], capsys)
    verdict(result, 1, files)
    assert re.fullmatch(r"rnnlab-tui: the run failed: cannot write the checkpoint \S+\.pt: No space left on device\n",
                        result.err)


def test_two_runs_on_one_log_lose_nothing(place, verdict):
    """Started together on the same --events: one trains, the other is refused in one line."""
    log = place / "shared.jsonl"
    args = ["train", "--headless", "--length", "5", "--epochs", "1", "--events", str(log)]
    first, second = _start(args, place), _start(args, place)
    results = [Result(p.returncode, *p.communicate(timeout=120)) for p in (first, second)]
    for result, process in zip(results, (first, second)):
        result.code = process.returncode
    refused = [r for r in results if r.code == 2]
    trained = [r for r in results if r.code == 0]
    assert len(refused) == 1 and len(trained) == 1, [(r.code, r.err) for r in results]
    verdict(refused[0], 2)
    assert "a file that exists" in refused[0].err
    events = _events(log)
    assert [e["type"] for e in events].count("run_started") == 1 and events[-1]["type"] == "run_finished"


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            found += [int(child) for child in handle.read().split()]
    return found


def test_the_tui_says_when_its_engine_is_killed(place, verdict):
    pexpect = pytest.importorskip("pexpect")
    import io

    log = io.BytesIO()
    child = pexpect.spawn(sys.executable, ["-m", "rnnlab_tui", "train", "--length", "5", "--epochs", "400",
                                           "--no-pause-on-alarm"],
                          cwd=str(place), dimensions=(24, 80), timeout=60,
                          env=terminal_environment(place))
    child.logfile_read = log
    try:
        child.expect("steps/s")
        (engine,) = _children(child.pid)
        deadline = time.monotonic() + 30
        while '"type":"step"' not in "".join(
                open(path).read() for path in _logs(place)) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(engine, signal.SIGKILL)
        child.expect("ENGINE FAILED")
        child.expect([pexpect.TIMEOUT], timeout=0.3)
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    raw = log.getvalue().decode("utf-8", "replace")
    after = raw.rsplit("\x1b[?1049l", 1)[-1]  # what is written once the app has left the screen
    after = re.sub(r"\x1b\[[0-9;?<>=]*[a-zA-Z~]", "", after)  # the app's own mode switches
    lines = [line for line in after.replace("\r", "").split("\n") if line.strip()]
    verdict(Result(child.exitstatus, "", "\n".join(lines)), 1)
    assert "the training process ended (exit -9, killed by SIGKILL)" in lines[0]


def _logs(folder) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
            if name.endswith(".jsonl")]


def test_a_terminal_that_cannot_draw_trains_headless(place, verdict):
    code, raw = terminal([sys.executable, "-m", "rnnlab_tui", "train", "--length", "5", "--epochs", "1"], place,
                         "Test", keys="", env={"TERM": "dumb"})
    text = raw.decode("utf-8", "replace")
    assert "[Train] epoch: 1/1" in text and "\x1b[?1049h" not in text  # no full-screen app
    verdict(Result(code, "", ""), 0, lines=0)


def test_watch_says_when_its_stream_ended(home, place, verdict):
    """The producer dies after a few events: the viewer says the stream ended and stays until q."""
    with open(home / "keep.jsonl", encoding="utf-8") as handle:
        head = "".join(handle.readline() for _ in range(6))
    (place / "head.jsonl").write_text(head, encoding="utf-8")
    code, raw = terminal(["/bin/sh", "-c", f"cat '{place / 'head.jsonl'}' | {sys.executable} -m rnnlab_tui watch -"],
                         place, "the stream ended")
    verdict(Result(code, "", ""), 0, lines=0)
    assert b"stream ended" in raw


def _failed_cleanly(log, checkpoints) -> None:
    """The log's complete lines all read back and the run's last checkpoint loads."""
    events = _events(log)
    assert events[0]["type"] == "run_started"
    last = [path for path in _checkpoints(checkpoints) if path.endswith("last.pt")]
    assert last, "no last checkpoint"
    ckpt.load(last[0])


@pytest.mark.parametrize("events", ["file", "-"])
def test_a_reader_that_goes_away_ends_the_run_in_one_line(events, place, verdict):
    """`train --headless | head -n 1`: the pipe closes after one line; the run stops with its last
    checkpoint and says so, instead of finishing unlogged with exit 0."""
    log = place / "run.jsonl"
    target = ["--events", str(log)] if events == "file" else ["--events", "-"]
    process = _start(SLOW_RUN + target + ["--checkpoint-dir", str(place / "ck")], place)
    process.stdout.readline()
    process.stdout.close()  # what head does after its line
    err = process.stderr.read()
    process.wait(timeout=60)
    verdict(Result(process.returncode, "", err, "Traceback" in err), 1)
    if events == "file":
        _failed_cleanly(log, place / "ck")


def test_output_on_a_full_device_ends_the_run_in_one_line(place, verdict):
    log = place / "run.jsonl"
    with open("/dev/full", "w") as full:
        result = run(["train", "--headless", "--length", "5", "--epochs", "3", "--events", str(log),
                      "--checkpoint-dir", str(place / "ck")], cwd=place, stdout=full)
    verdict(result, 1)
    assert "No space left on device" in result.err
    _failed_cleanly(log, place / "ck")


def test_a_log_on_a_full_disk_ends_the_run_with_its_last_checkpoint(place, verdict):
    """40 KB of room: the checkpoints fit, the log outgrows it. The run stops, its last checkpoint is
    written, one line says why."""
    log = place / "run.jsonl"
    result = run(["train", "--headless", "--length", "5", "--epochs", "60", "--events", str(log),
                  "--checkpoint-dir", str(place / "ck")], cwd=place, preexec_fn=_small_files(40_960))
    verdict(result, 1)
    assert "cannot write the run log" in result.err
    _failed_cleanly(log, place / "ck")
