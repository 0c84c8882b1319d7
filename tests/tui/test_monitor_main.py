"""`watch` on a missing or corrupt log ends with one clear line on stderr and exit code 2."""

import pytest

from tui.main import watch


def test_missing_log(tmp_path, capsys):
    assert watch(str(tmp_path / "nope.jsonl")) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cannot read log" in error


def test_corrupt_log(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\x00\xffnot json at all\n")
    assert watch(str(path)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not an rnnlab-tui event log" in error


def test_log_that_does_not_start_with_run_started(tmp_path, capsys):
    path = tmp_path / "headless.jsonl"
    path.write_text('{"type":"step","run":"x","step":1,"loss":2.5,"grad_norms":{},"total_norm":1.0}\n', encoding="utf-8")
    assert watch(str(path)) == 2
    assert "run_started" in capsys.readouterr().err


def test_empty_log(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    assert watch(str(path)) == 2
    assert "empty" in capsys.readouterr().err


def test_log_whose_run_started_has_a_config_of_the_wrong_type(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tui.main._run", lambda source: pytest.fail("the monitor opened on an unusable log"))
    path = tmp_path / "typed.jsonl"
    path.write_text('{"type":"run_started","run":"x","step":0,"t":0,"schema":2,"config":"zz"}\n', encoding="utf-8")
    assert watch(str(path)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "config is not dict" in error


def test_after_a_fork_both_branches_are_told_with_their_checkpoints():
    from engine.events import RunFinished
    from tui.state import RunState
    from tui.main import told_at_exit

    first, second, cut = RunState(), RunState(), RunState()
    first.ingest([RunFinished(run="a", step=40, reason="stopped", checkpoint="checkpoints/a/last.pt")])
    second.ingest([RunFinished(run="a-b", step=40, reason="stopped", checkpoint="checkpoints/a-b/last.pt")])
    assert told_at_exit([first, second, cut], ["runs/a.jsonl.gz", "runs/a-b.jsonl.gz"]) == [
        "stopped at step 40; last checkpoint checkpoints/a/last.pt",
        "resume with: rnnlab-tui train --resume checkpoints/a/last.pt",
        "stopped at step 40; last checkpoint checkpoints/a-b/last.pt",
        "resume with: rnnlab-tui train --resume checkpoints/a-b/last.pt",
        "replay with: rnnlab-tui watch runs/a.jsonl.gz runs/a-b.jsonl.gz"]
    assert told_at_exit([cut], ["runs/cut.jsonl"]) == []  # a run that never ended: its fault is told on stderr
    done = RunState()
    done.ingest([RunFinished(run="c", step=250, reason="finished", checkpoint="checkpoints/c/last.pt",
                             best_dev=0.1, test_accuracy=0.08)])
    assert told_at_exit([done], ["my log.jsonl"]) == ["finished at step 250, best dev 0.1, test accuracy 0.08; "
                                                      "last checkpoint checkpoints/c/last.pt",
                                                      "replay with: rnnlab-tui watch 'my log.jsonl'"]
