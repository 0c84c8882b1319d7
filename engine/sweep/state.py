"""The state of a sweep's runs, updated from its workers' messages, and what is concluded from them."""

from __future__ import annotations

import time

from .grid import Job, SweepSpec, log_path

ACTIVE = ("queued", "running")
CANCELLED = "stopped with the sweep"  # by Ctrl-C or SIGTERM, before the run could say it stopped
STOP_WAIT_S = 30.0  # after Ctrl-C: how long the runs may take to reach a step boundary


def new_row(job: Job) -> dict:
    return {**job.point, "seed": job.seed, "state": "queued", "step": 0, "epoch": None, "loss": None, "total": 0,
            "best_dev": None, "test_accuracy": None, "test_perplexity": None, "exploded": False,
            "first_explosion_step": None, "max_grad_norm": None, "wall_s": None,
            "log": "", "host": "", "pid": None, "error": ""}  # log: once it has started


class Sweep:
    """All runs of one sweep: ``apply`` takes a worker's message, ``report`` is the results' JSON."""

    def __init__(self, spec: SweepSpec, jobs: list[Job], sweep_id: str, options: dict):
        self.spec, self.id, self.options = spec, sweep_id, options
        self.jobs = {job.key: job for job in jobs}
        self.rows = {job.key: new_row(job) for job in jobs}
        # what the runs are compared by: the digit tasks' accuracy, the language model's perplexity
        self.score = "perplexity" if jobs and jobs[0].config.task == "lm" else "accuracy"
        self.started = time.monotonic()
        self.wall_s = 0.0
        self.startup_s = 0.0  # the backend's start-up (Ray: ray.init)
        self.interrupted = False
        self.paths: dict[str, str] = {}  # json, csv once written

    def apply(self, kind: str, key: int, fields: dict) -> None:
        row = self.rows[key]
        if row["state"] not in ACTIVE:  # a run already settled (a late message of a dead worker)
            return
        if kind == "started":
            row.update(state="running", log=log_path(self.jobs[key]), **fields)
        elif kind == "progress":
            row.update({name: value for name, value in fields.items() if value is not None})
        elif kind == "done":
            row.update(fields)
            if row["state"] == "finished":
                row["step"] = row["total"]

    def settle(self, key: int, state: str, error: str = "") -> None:
        """A run that ended without saying so (its worker died, or it never started)."""
        row = self.rows[key]
        if row["state"] == "queued" and state == "stopped":  # stopped before it began: it never ran, so
            row.update(state="cancelled", exploded=None)  # it has no results, not even "did not explode"
        elif row["state"] in ACTIVE:
            row.update(state=state, error=row["error"] or error)

    def pending(self) -> list[int]:
        return [key for key, row in self.rows.items() if row["state"] in ACTIVE]

    def finish(self) -> None:
        """The end, normal or not: every run still open is stopped (Ctrl-C, SIGTERM; cancelled if it had
        not started) or failed."""
        self.wall_s = time.monotonic() - self.started
        for key in self.pending():
            if self.interrupted:
                self.settle(key, "stopped", CANCELLED)
            else:
                self.settle(key, "failed", "no worker was left to run it")

    def report(self) -> dict:
        runs = [dict(row) for row in self.rows.values()]
        spec, options = self.spec, self.options
        report = {"sweep": self.id, "study": spec.study, "preset": spec.preset, "grid": spec.grid(),
                  "backend": options["backend"], "address": options.get("address", ""),
                  "backend_startup_s": round(self.startup_s, 3), "impl": options["impl"],
                  "workers": options["workers"], "sequential": options["sequential"],
                  "threads_per_worker": options["threads"], "epochs": options["epochs"], "seeds": spec.seeds,
                  "score": self.score, "wall_s": round(self.wall_s, 3),
                  "complete": all(r["state"] == "finished" for r in runs), "interrupted": self.interrupted,
                  "runs": runs, "means": seed_means(runs, list(spec.axes), self.score)}
        if {"cell", "length"} <= set(spec.axes):
            report["cells"], report["lengths"] = spec.axes["cell"], spec.axes["length"]
            report["lstm_above_srn_for_L_ge_15"] = lstm_above_srn(report["means"])
        if {"lr", "clip"} <= set(spec.axes):
            report["stability_map"] = stability_map(report["means"], spec, self.score)
            # the other axes' runs share a cell of the map (the seeds are its n)
            report["stability_map_pools"] = {key: values for key, values in spec.grid().items()
                                             if key not in ("lr", "clip", "seed")}
        return {**report, **self.paths}


def watch(sweep: Sweep, poll, cancel) -> None:
    """A backend's loop: ``poll()`` until it returns False. The first Ctrl-C marks the sweep interrupted,
    calls ``cancel()`` and waits up to STOP_WAIT_S more for the runs to stop; a second stops waiting."""
    deadline = None
    while True:
        try:
            if not poll() or (deadline is not None and time.monotonic() > deadline):
                return
        except KeyboardInterrupt:
            if sweep.interrupted:
                return
            sweep.interrupted = True
            cancel()
            deadline = time.monotonic() + STOP_WAIT_S


def seed_means(runs: list[dict], axes: list[str], score: str = "accuracy") -> list[dict]:
    """Per point, in run order: its finished seeds' test score, accuracy or perplexity (mean, min, max, n),
    and explosions."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run[key] for key in axes if key != "seed"), []).append(run)
    means = []
    for point, members in groups.items():
        done = [r for r in members if r["state"] == "finished"]
        scores = [r[f"test_{score}"] for r in done if r[f"test_{score}"] is not None]
        firsts = [r["first_explosion_step"] for r in done if r["exploded"]]
        means.append({**dict(zip([key for key in axes if key != "seed"], point)),
                      "seeds": [r["seed"] for r in members], "n": len(scores),
                      f"mean_test_{score}": sum(scores) / len(scores) if scores else None,
                      f"min_test_{score}": min(scores, default=None),
                      f"max_test_{score}": max(scores, default=None),
                      "exploded": len(firsts), "first_explosion_step": min(firsts, default=None),
                      "failed_seeds": [r["seed"] for r in members if r["state"] == "failed"]})
    return means


def lstm_above_srn(means: list[dict]):
    """The textbook's conclusion: LSTM's mean test accuracy above SRN's at every L >= 15 (None: not
    measured). With one seed the mean is that run's accuracy."""
    accuracy = {(m["cell"], m["length"]): m["mean_test_accuracy"] for m in means}
    lengths = sorted({length for cell, length in accuracy if length >= 15})
    pairs = [(accuracy.get(("lstm", n)), accuracy.get(("srn", n))) for n in lengths]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    return all(a > b for a, b in pairs) if pairs else None


def stability_map(means: list[dict], spec: SweepSpec, score: str = "accuracy") -> list[dict]:
    """One row per learning rate: for each clipping threshold (None = no clipping), how many of its
    finished seeds exploded, the first explosion step among them and the mean test score."""
    rows = []
    for lr in spec.axes["lr"]:
        cells = []
        for clip in spec.axes["clip"]:
            found = [m for m in means if m["lr"] == lr and m["clip"] == clip]
            n = sum(m["n"] for m in found)
            exploded = sum(m["exploded"] for m in found)
            firsts = [m["first_explosion_step"] for m in found if m["first_explosion_step"] is not None]
            totals = [m[f"mean_test_{score}"] * m["n"] for m in found if m["n"]]
            cells.append({"clip": clip, "n": n, "exploded": exploded, "first_explosion_step": min(firsts, default=None),
                          f"mean_test_{score}": sum(totals) / n if n else None})
        rows.append({"lr": lr, "thresholds": cells})
    return rows
