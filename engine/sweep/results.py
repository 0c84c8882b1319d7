"""The sweep's files: ``runs/<sweep>.json`` (everything), ``.csv`` (one row per run) and, with several
seeds, ``-means.csv`` (one row per point). Each is written to a temporary file and renamed, so a sweep
stopped while writing leaves the previous version whole."""

from __future__ import annotations

import csv
import json
import os

# "score": test_accuracy or test_perplexity, whichever the sweep's task has
RUN_COLUMNS = ["seed", "state", "score", "best_dev", "exploded", "first_explosion_step", "max_grad_norm",
               "step", "total", "wall_s", "host", "log", "error"]
MEAN_COLUMNS = ["n", "mean_score", "min_score", "max_score", "exploded",
                "first_explosion_step", "seeds", "failed_seeds"]


def _csv_value(value):
    return "none" if value is None else value


def write_results(report: dict, runs_dir: str) -> dict[str, str]:
    """Writes the files; returns their paths (json, csv, means_csv)."""
    os.makedirs(runs_dir, exist_ok=True)
    base = os.path.join(runs_dir, report["sweep"])
    paths = {"json": base + ".json", "csv": base + ".csv"}
    axes = [key for key in report["grid"] if key != "seed"]
    with open(paths["json"] + ".tmp", "w", encoding="utf-8") as handle:
        json.dump({**report, **paths}, handle, indent=2)
    os.replace(paths["json"] + ".tmp", paths["json"])
    # an axis value of None is clipping off: "none", as --grid spells it (a blank cell would read as missing)
    runs = [{**run, **{key: _csv_value(run[key]) for key in axes}} for run in report["runs"]]
    score = report["score"]
    _write_csv(paths["csv"], axes + _named(RUN_COLUMNS, f"test_{score}"), runs)
    if len(report["seeds"]) > 1:
        paths["means_csv"] = base + "-means.csv"
        rows = [{**m, **{key: _csv_value(m[key]) for key in axes}, "seeds": " ".join(map(str, m["seeds"])),
                 "failed_seeds": " ".join(map(str, m["failed_seeds"]))} for m in report["means"]]
        _write_csv(paths["means_csv"], axes + _named(MEAN_COLUMNS, f"test_{score}"), rows)
    return paths


def _named(columns: list[str], score: str) -> list[str]:
    return [column.replace("score", score) for column in columns]


def _write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
    with open(path + ".tmp", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)
