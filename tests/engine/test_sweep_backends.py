"""The sweep's two backends: the same runs give the same results, a worker that dies is its run's
failure (not retried), and Ctrl-C stops every run and keeps what finished.

One local Ray cluster of two CPUs serves the whole module (Ray takes seconds to start); the command's
own process joins it with ``--address``. The runs are the explosion chapter's SRN, a few epochs."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import ray

from engine.config import ROOT
from engine.logs import open_log
from engine.sweep.grid import make_spec
from engine.sweep.run import run_sweep

CLI = [sys.executable, "-m", "rnnlab_tui"]
WAIT_S = 120.0  # the longest a condition below may take on a busy two-core machine


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def dirs(tmp_path, name):
    return {"runs_dir": str(tmp_path / name / "runs"), "checkpoint_dir": str(tmp_path / name / "checkpoints")}


def events(path):
    with open_log(path) as handle:
        return [json.loads(line) for line in handle]


def numbers(path):
    """What a run's log says of its training, without the wall-clock fields."""
    lines = events(path)
    kept = []
    for event in lines:
        if event["type"] in ("step", "eval", "alarm", "run_finished"):
            kept.append({key: value for key, value in event.items()
                         if key not in ("t", "steps_per_s", "run", "checkpoint", "path")})
    return kept


def test_same_seeds_give_the_same_results_on_either_backend(cluster, tmp_path):
    spec = make_spec(preset="explode", grid=["cell=srn,lstm", "lr=0.2,0.5"], epochs=2)
    local = run_sweep(spec, workers=2, **dirs(tmp_path, "local"))
    on_ray = run_sweep(spec, backend="ray", **dirs(tmp_path, "ray"))
    assert local["complete"] and on_ray["complete"] and on_ray["backend"] == "ray"
    fields = ("cell", "lr", "seed", "state", "step", "total", "best_dev", "test_accuracy", "exploded",
              "first_explosion_step", "max_grad_norm")
    assert [{key: run[key] for key in fields} for run in local["runs"]] == \
           [{key: run[key] for key in fields} for run in on_ray["runs"]]
    assert any(run["exploded"] for run in on_ray["runs"])
    for mine, theirs in zip(local["runs"], on_ray["runs"]):  # every step's loss and norms, every alarm
        assert theirs["log"].startswith(str(tmp_path / "ray" / "runs")) and theirs["log"].endswith(".jsonl.gz")
        assert numbers(theirs["log"]) == numbers(mine["log"])
        run_id = os.path.basename(theirs["log"])[:-len(".jsonl.gz")]
        checkpoint = os.path.join(tmp_path, "ray", "checkpoints", run_id, "best.pt")
        assert os.path.getsize(checkpoint) > 0  # the task's checkpoints came home too


def kill_when_running(epochs):
    """An on_update that kills the worker of the run with this many epochs once its log holds steps."""
    killed = []

    def update(sweep):
        for key, row in sweep.rows.items():
            if sweep.jobs[key].point["epochs"] == epochs and row["state"] == "running" and row["pid"] \
                    and not killed and os.path.exists(row["log"]) and '"type":"step"' in open(row["log"]).read():
                os.kill(row["pid"], signal.SIGKILL)
                killed.append(row["pid"])

    return update, killed


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_worker_that_dies_fails_its_run_and_the_others_finish(cluster, tmp_path, backend):
    update, killed = kill_when_running(400)
    report = run_sweep(make_spec(preset="explode", grid=["epochs=400,1"]), on_update=update, backend=backend,
                       workers=1 if backend == "local" else 0, **dirs(tmp_path, backend))
    died, other = report["runs"]
    assert killed and died["state"] == "failed" and "died" in died["error"], died
    assert other["state"] == "finished" and other["test_accuracy"] is not None
    assert not report["complete"]
    lines = events(died["log"])
    assert [event["type"] for event in lines].count("run_started") == 1  # not tried again
    assert any(event["type"] == "step" for event in lines)  # what it did before it died is kept
    saved = json.load(open(report["json"]))
    assert [run["state"] for run in saved["runs"]] == ["failed", "finished"]


def wait_for(condition, what):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT_S:.0f} s for {what}"
        time.sleep(0.1)


def last_event(runs, suffix):
    """The last whole event of a run's log: plain while it runs, compressed once it ended."""
    logs = list(runs.glob(f"sweep-*-{suffix}.jsonl.gz")) or list(runs.glob(f"sweep-*-{suffix}.jsonl"))
    if not logs:
        return None
    try:
        with open_log(str(logs[0])) as handle:
            complete = [line for line in handle.read().splitlines() if line.endswith(b"}")]
    except FileNotFoundError:  # compressed and removed between the glob and the open
        return None
    return json.loads(complete[-1]) if complete else None


@pytest.mark.parametrize("backend, stop", [("local", signal.SIGINT), ("ray", signal.SIGINT),  # SIGTERM: a
                                           ("local", signal.SIGTERM), ("ray", signal.SIGTERM)])  # scheduler, timeout
def test_ctrl_c_or_sigterm_stops_every_run_and_keeps_what_finished(cluster, tmp_path, backend, stop):
    grid = ["epochs=1,2000"] + (["--backend", "ray", "--address", cluster] if backend == "ray" else ["--workers", "2"])
    # the local sweep starts with SIGINT ignored, as a script's background job does: a SIGINT still stops it
    ignored = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if backend == "local" else None
    sweep = subprocess.Popen(CLI + ["sweep", "--preset", "explode", "--grid"] + grid, cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT},
                             preexec_fn=ignored)
    runs = tmp_path / "runs"
    try:
        wait_for(lambda: (last_event(runs, "epochs1") or {}).get("type") == "run_finished", "the short run")
        wait_for(lambda: (last_event(runs, "epochs2000") or {}).get("type") == "step", "the long run's steps")
        sweep.send_signal(stop)
        out, err = sweep.communicate(timeout=WAIT_S)
    finally:
        sweep.kill()
    assert sweep.returncode == 130, err
    (path,) = runs.glob("sweep-*[0-9].json")
    report = json.loads(path.read_text())
    assert report["interrupted"] and [run["state"] for run in report["runs"]] == ["finished", "stopped"]
    short, long = report["runs"]
    assert short["test_accuracy"] is not None and long["step"] < long["total"]
    assert all(run["log"].endswith(".jsonl.gz") and (tmp_path / run["log"]).exists() for run in report["runs"])
    stopped = last_event(runs, "epochs2000")  # the stopped run's log is whole, its end written
    assert stopped["type"] == "run_finished" and stopped["reason"] == "stopped"
    assert "stopped" in out and "wall time" in out and "SIGTERM received" not in err and "Traceback" not in err


def test_ctrl_c_while_a_finished_runs_log_is_compressed_still_compresses_every_log(cluster, tmp_path, monkeypatch):
    import engine.session

    compress_log = engine.session.compress_log
    interrupted = []

    def interrupted_once(path):  # the first Ctrl-C lands while the short run's log is compressed
        if not interrupted:
            interrupted.append(path)
            raise KeyboardInterrupt
        return compress_log(path)

    monkeypatch.setattr(engine.session, "compress_log", interrupted_once)
    report = run_sweep(make_spec(preset="explode", grid=["epochs=1,2000"]), backend="ray", **dirs(tmp_path, "ray"))
    assert interrupted and report["interrupted"]
    short, long = report["runs"]
    assert short["state"] == "finished" and long["state"] == "stopped"
    for run in (short, long):  # every run's log compressed when it ended, the plain one gone
        assert run["log"].endswith(".jsonl.gz") and os.path.exists(run["log"]), run["log"]
        assert not os.path.exists(run["log"][:-len(".gz")])
    assert events(short["log"])[-1]["type"] == "run_finished"
    run_id = os.path.basename(short["log"])[:-len(".jsonl.gz")]
    assert os.path.getsize(tmp_path / "ray" / "checkpoints" / run_id / "best.pt") > 0  # its result came home


def workers_of(pid):
    """The pids of a process's spawned workers (their command line runs multiprocessing's spawn_main)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                spawned = b"spawn_main" in cmdline.read()
        except (ValueError, OSError):  # not a process, or gone
            continue
        if parent == pid and spawned:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers through /proc")
@pytest.mark.parametrize("group", [True, False], ids=["ctrl-c-at-the-terminal", "sigint-to-the-sweep"])
def test_a_stop_while_the_workers_start_prints_no_traceback(tmp_path, group):
    sweep = subprocess.Popen(CLI + ["sweep", "--preset", "explode", "--grid", "lr=0.2,0.5", "--epochs", "3",
                                    "--workers", "2"], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT}, start_new_session=True)
    try:
        wait_for(lambda: len(workers_of(sweep.pid)) == 2, "the workers")  # importing torch: seconds
        if group:  # as a terminal's Ctrl-C: the sweep's whole process group
            os.killpg(sweep.pid, signal.SIGINT)
        else:
            sweep.send_signal(signal.SIGINT)
        out, err = sweep.communicate(timeout=WAIT_S)
    finally:
        sweep.kill()
    assert sweep.returncode == 130, err
    assert "Traceback" not in err, err
    (path,) = (tmp_path / "runs").glob("sweep-*[0-9].json")
    report = json.loads(path.read_text())
    # stopped while their workers still started: neither run began, so neither is a result
    assert report["interrupted"] and [run["state"] for run in report["runs"]] == ["cancelled", "cancelled"]
    assert "wall time" in out
