"""The wheel, installed in a fresh virtual environment outside the checkout, works from another
folder: it trains on the digit files and a corpus it carries, generates from the checkpoint it wrote,
and exports the log it wrote, all under the folder it was started in."""

import os
import shutil
import subprocess
import sys

import pytest

from engine.config import ROOT

# `make test` (what CI runs) includes it; `pytest -m "not wheel"` leaves it out while developing
pytestmark = pytest.mark.wheel

# what the checkout holds that a wheel is not built from
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    "runs", "checkpoints")


def run(command, cwd, timeout=600):
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "RNNLAB_HOME", "VIRTUAL_ENV", "PYTHONHOME")}
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
    return done.stdout


def test_the_installed_wheel_trains_generates_and_exports_from_another_folder(tmp_path):
    # Built from a copy of the sources: an in-tree build/ folder could add files the checkout no longer has.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", tmp_path / "dist", source], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("rnnlab_tui-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python, tool = venv / "bin" / "python", venv / "bin" / "rnnlab-tui"
    # --no-compile: byte-compiling torch's thousands of modules would be most of the install's CPU time
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         f"{wheel}[tensorboard]", "-c", os.path.join(ROOT, "constraints.txt")], cwd=tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run([python, "-c", "import engine.config as c; print(c.DATA_ROOT)"], cwd=work).strip()
    assert where.startswith(str(venv)) and os.path.isfile(os.path.join(where, "corpus", "NOTICE"))

    run([tool, "train", "--preset", "explode", "--epochs", "1", "--headless"], cwd=work)
    run([tool, "train", "--task", "lm", "--hidden", "16", "--embed", "8", "--batch-size", "64", "--epochs", "1",
         "--log-steps", "100", "--headless"], cwd=work)
    logs = sorted(os.listdir(work / "runs"))
    assert len(logs) == 2 and all(name.endswith(".jsonl.gz") for name in logs)
    (lm_run,) = [name[: -len(".jsonl.gz")] for name in logs if name.startswith("lstm-lm")]
    text = run([tool, "generate", "--checkpoint", work / "checkpoints" / lm_run / "last.pt",
                "--prefix", "time traveller", "--length", "20"], cwd=work)
    assert text.startswith("time traveller") and len(text.rstrip("\n")) == len("time traveller") + 20

    run([tool, "export", lm_run, "--csv", "lm.csv", "--tensorboard", "tb"], cwd=work)
    with open(work / "lm.csv", encoding="utf-8") as handle:
        header, *rows = handle.read().splitlines()
    assert "grad_norm/W_f" in header.split(",") and len(rows) > 10
    (events,) = os.listdir(work / "tb" / lm_run)
    assert events.startswith("events.out.tfevents.")
    assert sorted(os.listdir(work)) == ["checkpoints", "lm.csv", "runs", "tb"]
