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
