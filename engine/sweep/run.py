"""``run_sweep``: a spec's jobs on a backend, the live updates, the results written whatever happens."""

from __future__ import annotations

import os
import time

from .grid import SweepSpec, make_jobs
from .results import write_results
from .state import Sweep

BACKENDS = ("local", "ray")


def new_sweep_id() -> str:
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 100000:05d}"


def plan(spec: SweepSpec, *, backend: str = "local", address: str = "", workers: int = 0, impl: str = "auto",
         sequential: bool = False, runs_dir: str = "runs", checkpoint_dir: str = "checkpoints",
         data_dir: str = "", sweep_id: str = "") -> Sweep:
    """The sweep's jobs, every config built and checked (a bad point raises GridError here)."""
    sweep_id = sweep_id or new_sweep_id()
    jobs = make_jobs(spec, sweep_id, impl=impl, runs_dir=runs_dir, checkpoint_dir=checkpoint_dir,
                     data_dir=data_dir)
    cores = os.cpu_count() or 1
    if backend == "ray":
        threads = 1  # a task has one CPU
    elif sequential:
        workers, threads = 1, 1
    else:
        workers = max(1, min(workers or cores, len(jobs)))
        threads = max(1, cores // workers)  # with fewer workers than cores the spare cores go to them
    epochs = spec.fixed.get("epochs") or (None if "epochs" in spec.axes else jobs[0].config.epochs)
    options = {"backend": backend, "address": address, "impl": impl, "workers": workers, "sequential": sequential,
               "threads": threads, "epochs": epochs, "runs_dir": runs_dir}
    return Sweep(spec, jobs, sweep_id, options)


def execute(sweep: Sweep, on_update=None) -> dict:
    """Run the sweep; write runs/<sweep>.json and .csv; return the report (also after Ctrl-C)."""
    from .local import run_here, run_pool

    update = on_update or (lambda sweep: None)
    options = sweep.options
    try:
        if options["backend"] == "ray":
            from .on_ray import run_ray

            run_ray(sweep, update, address=options["address"], cpus=options["workers"])
        elif options["sequential"]:
            run_here(sweep, update)
        else:
            run_pool(sweep, update)
    except KeyboardInterrupt:  # between two of the backend's own checks
        sweep.interrupted = True
    finally:
        sweep.finish()
        sweep.paths = write_results(sweep.report(), options["runs_dir"])
        update(sweep)
    return sweep.report()


def run_sweep(spec: SweepSpec, on_update=None, **options) -> dict:
    """``plan`` then ``execute``: the whole sweep from Python."""
    return execute(plan(spec, **options), on_update)
