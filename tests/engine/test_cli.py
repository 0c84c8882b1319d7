"""The command line as a user meets it: subprocesses, exit codes, one-line errors."""

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from engine.config import ROOT

CLI = [sys.executable, "-m", "rnnlab_tui"]


def rnnlab(*args, timeout=120, cwd=None):
    return subprocess.run(CLI + list(args), cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT})


def assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


@pytest.mark.parametrize("args, fragment", [
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--lr", "0"], "--lr must be a positive number"),
    (["train", "--lr", "-1"], "--lr must be a positive number"),
    (["train", "--lr", "fast"], "'fast' is not a number"),
    (["train", "--length", "2"], "--length must be at least 3"),
    (["train", "--length", "7"], "--length must be one of the generated lengths"),
    (["train", "--cell", "rnn"], "invalid choice: 'rnn'"),
    (["train", "--preset", "nope"], "invalid choice: 'nope'"),
    (["train", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "--clip", "-3"], "--clip must be a positive max_norm"),
    (["train", "--bidirectional"], "--bidirectional is for the language model task"),
    (["train", "--resume", "missing.pt", "--headless"], "missing.pt: no such checkpoint"),
    (["gates", "--checkpoint", "missing.pt"], "missing.pt: no such checkpoint"),
    (["watch", "missing.jsonl"], "missing.jsonl: no such log file"),
    (["watch", "/dev/null"], "/dev/null: not a file (a device or a pipe)"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "--fork", "clip=1"], "--fork-at STEP and --fork CHANGE go together"),
    (["train", "--fork-at", "3"], "--fork-at STEP and --fork CHANGE go together"),
    (["train", "--fork-at", "0", "--fork", "clip=1"], "--fork-at 0: the fork comes after a step, 1 or more"),
    (["train", "--fork-at", "three", "--fork", "clip=1"], "invalid int value: 'three'"),
    (["train", "--fork-at", "3", "--fork", "momentum=0.9"], "not 'momentum=0.9'"),
    (["train", "--fork-at", "3", "--fork", "lr=0.2"], "--fork lr=0.2: the run has that already"),
    (["train", "--fork-at", "3", "--fork", "clip=none"], "--fork clip=none: the run has that already"),
    (["train", "--fork-at", "3", "--fork", "clip=big"], "clip= takes a number, not 'big'"),
    (["train", "--fork-at", "3", "--fork", "lr=-1"], "lr= must be a positive number"),
    (["watch", "-", "a.jsonl"], "watch - follows one stream"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, fragment):
    assert_one_line_error(rnnlab(*args), fragment)


@pytest.fixture(scope="module")
def lstm_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    result = rnnlab("train", "--preset", "memory", "--length", "10", "--epochs", "1", "--headless",
                    "--checkpoint-dir", str(folder), "--events", str(folder / "run.jsonl"))
    assert result.returncode == 0, result.stderr
    (last,) = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if name == "last.pt"]
    return last


def test_headless_training_prints_the_textbook_log_lines(lstm_checkpoint):
    log = os.path.join(os.path.dirname(os.path.dirname(lstm_checkpoint)), "run.jsonl")
    events = [json.loads(line) for line in open(log)]
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_finished"
    result = rnnlab("train", "--epochs", "1", "--headless", "--checkpoint-dir", os.path.dirname(log),
                    "--events", os.path.join(os.path.dirname(log), "explode.jsonl"))
    assert result.returncode == 0
    assert "[Train] epoch: 1/1, step: 3/5, loss:" in result.stdout
    assert "W_grad_l2:" in result.stdout and "U_grad_l2:" in result.stdout and "b_grad_l2:" in result.stdout
    assert "[Evaluate] dev score:" in result.stdout and "[Alarm] explosion at step" in result.stdout


def test_headless_fork_writes_two_logs_that_watch_can_overlay(tmp_path):
    log = tmp_path / "run.jsonl"
    result = rnnlab("train", "--preset", "explode", "--epochs", "2", "--headless", "--fork-at", "4", "--fork",
                    "clip=1", "--checkpoint-dir", str(tmp_path), "--events", str(log))
    assert result.returncode == 0, result.stderr
    second = tmp_path / "run-b.jsonl"
    assert f"[Log] {second} (the second branch; watch both: rnnlab-tui watch {log} {second})" in result.stdout
    lines = [json.loads(line) for line in second.read_text().splitlines()]
    assert lines[0]["type"] == "run_started" and lines[0]["config"]["fork_step"] == 4
    assert [line["step"] for line in lines if line["type"] == "step"] == list(range(5, 11))
    # both branches' test scores are said, the second's from the end of its log
    (finished,) = [line for line in lines if line["type"] == "run_finished"]
    assert f"[Test] second branch (clip 1): accuracy: {finished['test_accuracy']:.5g}" in result.stdout


def test_a_fork_at_or_after_the_last_step_is_refused_before_the_run_starts(tmp_path):
    log = tmp_path / "run.jsonl"
    result = rnnlab("train", "--preset", "explode", "--epochs", "1", "--headless", "--fork-at", "5", "--fork",
                    "clip=1", "--checkpoint-dir", str(tmp_path), "--events", str(log))
    assert_one_line_error(result, "--fork-at 5: the run ends at step 5 (1 epoch of 5 steps)")
    assert "(1 to 4)" in result.stderr and result.stdout == ""
    assert not log.exists()  # refused before anything was written
    assert rnnlab("train", "--preset", "explode", "--epochs", "1", "--headless", "--checkpoint-dir", str(tmp_path),
                  "--runs-dir", str(tmp_path)).returncode == 0
    last = str(next(tmp_path.rglob("last.pt")))
    result = rnnlab("train", "--resume", last, "--epochs", "2", "--headless", "--fork-at", "3", "--fork", "clip=1",
                    "--checkpoint-dir", str(tmp_path), "--events", str(log))
    assert_one_line_error(result, "--fork-at 3: the checkpoint resumed is at step 5, past it")
    assert not log.exists()


def test_gates_prints_the_lstm_heatmaps_labelled_by_the_input(lstm_checkpoint):
    result = rnnlab("gates", "--checkpoint", lstm_checkpoint, "--input", "6 7 0 0 1 0 0 0 0 0")
    assert result.returncode == 0, result.stderr
    for title in ("input gate", "forget gate", "output gate", "cell state"):
        assert title in result.stdout
    header = [line for line in result.stdout.splitlines() if line.split() == "6 7 0 0 1 0 0 0 0 0".split()]
    assert len(header) == 4  # one column header per heatmap
    assert result.stdout.count("legend:") == 4
    assert len([line for line in result.stdout.splitlines() if line.startswith("   31 ")]) == 4  # 32 units
    # beside them, the flow through the 10 time steps on the dev set and σ_max of each gate's U
    flow = [float(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("  t=")]
    assert len(flow) == 10
    scale = re.search(r"bars on a log scale from (\S+) to (\S+)\)", result.stdout)  # the range the bars span
    positive = [value for value in flow if value > 0]
    assert scale and [float(scale[1]), float(scale[2])] == [min(positive), max(positive)]
    assert "‖∂L/∂h_1‖/‖∂L/∂h_T‖ = " in result.stdout
    for name, bound in (("U_i", 4), ("U_f", 4), ("U_o", 4), ("U_c", 1)):
        assert f"σ_max({name}) = " in result.stdout and f"1/γ = {bound}" in result.stdout


@pytest.mark.parametrize("text, fragment", [("6 x 0", "'x' is not a digit"), ("1 2 3 4 5 6 7 8 9 0 1", "at most 10 digits")])
def test_gates_rejects_a_bad_input(lstm_checkpoint, text, fragment):
    assert_one_line_error(rnnlab("gates", "--checkpoint", lstm_checkpoint, "--input", text), fragment)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "foreign"])
def test_a_damaged_checkpoint_is_one_line(lstm_checkpoint, tmp_path, damage):
    data = open(lstm_checkpoint, "rb").read()
    path = tmp_path / "damaged.pt"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"some": torch.zeros(2)}, path)
    result = rnnlab("gates", "--checkpoint", str(path))
    assert_one_line_error(result, str(path))
    assert_one_line_error(rnnlab("train", "--resume", str(path), "--headless"), str(path))


def test_ctrl_c_mid_epoch_keeps_a_complete_log_and_a_loadable_checkpoint(tmp_path):
    log = tmp_path / "run.jsonl"
    process = subprocess.Popen(CLI + ["train", "--preset", "memory", "--length", "10", "--headless",
                                      "--checkpoint-dir", str(tmp_path), "--events", str(log)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": ROOT})
    deadline = time.time() + 60
    while time.time() < deadline:
        if log.exists() and log.read_text().count('"type":"step"') >= 60:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    text = log.read_text()
    assert text.endswith("\n")
    events = [json.loads(line) for line in text.splitlines()]  # every line complete
    assert events[-1]["type"] == "run_finished" and events[-1]["reason"] == "stopped"
    last = events[-1]["checkpoint"]
    payload = torch.load(last, weights_only=True)
    assert payload["step"] == max(e["step"] for e in events if e["type"] == "step")
    # the checkpoint names the next batch to run: the steps done so far, 38 batches of 8 an epoch
    assert (payload["epoch"] - 1) * 38 + payload["batch"] == payload["step"]
    assert "--resume" in stdout


def test_a_tui_runs_checkpoint_resumes_headless_without_its_pause_or_speed_cap(tmp_path):
    """A run started in the TUI saves pause_on_alarm and a 20 steps/s cap in its checkpoint; resumed
    headless, nobody can answer a pause: the run goes through its explosion (rescue: step 58) at full speed."""
    from engine import checkpoint as ckpt

    common = ["--checkpoint-dir", str(tmp_path), "--runs-dir", str(tmp_path)]
    result = rnnlab("train", "--preset", "rescue", "--epochs", "50", "--headless", *common)
    assert result.returncode == 0, result.stderr
    last = next(str(path) for path in tmp_path.rglob("last.pt"))
    before = sorted(tmp_path.rglob("*"))
    at_end = ckpt.load(last)  # as a best.pt of the last step holds it: the batch after the epoch's last
    at_end.update(epoch=50, batch=at_end["steps_per_epoch"])
    best = str(tmp_path / "best-at-the-end.pt")
    ckpt.save(best, at_end)
    before = sorted(tmp_path.rglob("*"))
    for finished, epochs in ((last, []), (best, []), (last, ["--epochs", "20"])):  # nothing left to train
        assert_one_line_error(rnnlab("train", "--resume", finished, "--headless", *epochs, *common),
                              f"the run has trained 50 epochs (step 50) and this one would end after "
                              f"{epochs[-1] if epochs else 50}; --epochs 51 or more trains it further")
    assert sorted(tmp_path.rglob("*")) == before  # no new run, log or checkpoint
    payload = ckpt.load(last)
    payload["config"].update(pause_on_alarm=True, speed=20.0)  # what the TUI's run holds
    payload["settings"]["speed"] = 20.0
    ckpt.save(last, payload)
    log = tmp_path / "resumed.jsonl"
    result = rnnlab("train", "--resume", last, "--epochs", "70", "--headless", "--events", str(log), *common,
                    timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["type"] == "alarm" and e["kind"] == "explosion" and e["step"] == 58 for e in events)
    assert not any(e["type"] == "status" and e["state"] == "paused" for e in events)
    assert {e["speed"] for e in events if e["type"] == "settings"} == {0.0}
    assert max(e["step"] for e in events if e["type"] == "step") == 70


def test_the_child_answers_commands_and_stops_when_its_steering_goes_away(tmp_path):
    """`python -m engine.child CONFIG`: events on stdout, commands on stdin; stdin closing stops it."""
    from engine.config import build_config

    config = build_config(speed=50, checkpoint_dir=str(tmp_path), runs_dir=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "engine.child", json.dumps(config.to_dict())], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": ROOT})
    seen = []
    for line in process.stdout:
        seen.append(json.loads(line))
        if seen[-1]["type"] == "step" and seen[-1]["step"] == 2:
            process.stdin.write('{"type": "set_clip", "on": true, "max_norm": 20}\nnot json\n{"type": "pause"}\n')
            process.stdin.flush()
        if seen[-1]["type"] == "status" and seen[-1]["state"] == "paused":
            process.stdin.close()  # the TUI went away while the run was paused
    assert process.wait(timeout=60) == 0
    kinds = [(e["type"], e.get("level") or e.get("state") or "") for e in seen]
    assert ("notice", "error") in kinds  # the malformed line was answered, not fatal
    assert any(e["type"] == "settings" and e["cause"] == "command" and e["clip_on"] and e["clip_max_norm"] == 20
               for e in seen)
    assert seen[-1]["type"] == "run_finished" and seen[-1]["reason"] == "stopped"
    assert not (tmp_path / f"{seen[0]['run']}.jsonl").exists()  # compressed once the run ended
    with gzip.open(tmp_path / f"{seen[0]['run']}.jsonl.gz", "rt", encoding="utf-8") as handle:
        log = [json.loads(line) for line in handle]
    assert log[-1] == seen[-1]


def test_events_to_stdout_leave_stderr_to_errors(tmp_path):
    """`train --headless --events - | watch -` over ssh: stderr reaches the viewer's terminal."""
    args = ("train", "--epochs", "1", "--headless", "--events", "-", "--checkpoint-dir", str(tmp_path),
            "--runs-dir", str(tmp_path))
    quiet = rnnlab(*args)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout.splitlines()[-1])["type"] == "run_finished"
    asked = rnnlab(*args, "--progress")
    assert "[Train] epoch: 1/1" in asked.stderr
