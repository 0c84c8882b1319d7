"""Where a run's files go (the current folder, $RNNLAB_HOME, the options) and where `data` writes."""

import filecmp
import os
import subprocess
import sys

from engine.config import DATA_ROOT, DIGIT_LENGTHS, ROOT

CLI = [sys.executable, "-m", "rnnlab_tui"]


def rnnlab(*args, cwd, home=None):
    env = {key: value for key, value in os.environ.items() if key != "RNNLAB_HOME"}
    env["PYTHONPATH"] = ROOT
    if home is not None:
        env["RNNLAB_HOME"] = str(home)
    return subprocess.run(CLI + list(args), cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def _files(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def test_runs_and_checkpoints_go_under_the_current_folder(tmp_path):
    result = rnnlab("train", "--epochs", "1", "--headless", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = _files(tmp_path)
    (log,) = [name for name in files if name.startswith("runs" + os.sep)]
    assert log.endswith(".jsonl.gz") and f"[Log] {log}" in result.stdout
    run = os.path.basename(log)[: -len(".jsonl.gz")]
    assert os.path.join("checkpoints", run, "last.pt") in files
    assert all(name.startswith(("runs", "checkpoints")) for name in files)


def test_rnnlab_home_moves_both_folders_and_the_options_move_each(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    assert rnnlab("train", "--epochs", "1", "--headless", cwd=work, home=home).returncode == 0
    assert _files(work) == []
    assert {name.split(os.sep)[0] for name in _files(home)} == {"runs", "checkpoints"}
    logs = tmp_path / "logs"
    result = rnnlab("train", "--epochs", "1", "--headless", "--runs-dir", str(logs), cwd=work, home=home)
    assert result.returncode == 0, result.stderr
    (log,) = _files(logs)
    assert log.endswith(".jsonl.gz") and len(_files(home / "runs")) == 1  # the first run's only
    assert len({name.split(os.sep)[0] for name in _files(home / "checkpoints")}) == 2  # one folder per run


def test_data_writes_where_it_is_told_byte_identical_to_the_shipped_files(tmp_path):
    result = rnnlab("data", "--output", "digits-copy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "digits-copy" in result.stdout
    written = tmp_path / "digits-copy"
    assert len(_files(written)) == 3 * len(DIGIT_LENGTHS)
    for length in DIGIT_LENGTHS:
        for split in ("train", "dev", "test"):
            shipped = os.path.join(DATA_ROOT, "digits", str(length), f"{split}.txt")
            assert filecmp.cmp(shipped, written / str(length) / f"{split}.txt", shallow=False)


def test_data_into_a_folder_it_cannot_make_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = rnnlab("data", "--output", "a-file/digits", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "a-file" in result.stderr
