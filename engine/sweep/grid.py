"""What a sweep trains: a preset as the base, axes of train options, seeds; one job per point and seed.

``--grid lr=0.05,0.2 clip=none,20`` adds (or replaces) one axis per option; every combination of the
axes' values is a point, trained once per seed. A study names a preset with its usual axes: ``memory``
(NNDL 6.3, cells x lengths) and ``stability`` (the explosion chapter's settings, learning rate x
clipping threshold). Everything is checked here, before any process starts, so a bad key or value is
one line and exit 2.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass, field, fields, replace

from ..config import PRESETS, ConfigError, TrainConfig, build_config

# Options a grid may vary: every train option except where files go, how the run is shown and what it
# resumes, nor the task (its preset's: a sweep compares one score, accuracy or perplexity). Their types
# come from TrainConfig.
_NOT_AXES = {"checkpoint_dir", "runs_dir", "data_dir", "preset", "run_id", "resume", "device", "speed",
             "probe", "log_steps", "task"}
GRID_KEYS = {f.name: f.type for f in fields(TrainConfig) if f.name not in _NOT_AXES}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")

# ``--impl auto``: the faster of two implementations of the same function, per cell (bench: the
# scratch SRN runs in about 0.6x the time of PyTorch's CPU RNN; PyTorch's fused LSTM beats scratch).
FASTEST_IMPL = {"srn": "scratch", "lstm": "torch", "gru": "torch"}


class GridError(ConfigError):
    """A grid the user wrote that cannot be swept; one line, exit 2."""


@dataclass(frozen=True)
class Study:
    name: str
    preset: str  # the base of every point
    axes: tuple  # ((key, (values...)), ...) in table order
    about: str


STUDIES = {
    "memory": Study("memory", "memory", (("cell", ("srn", "lstm")), ("length", (10, 15, 20, 25, 30, 35))),
                    "NNDL 6.3: test accuracy of SRN and LSTM against the sequence length"),
    # The learning rates bracket the textbook's 0.2: at 0.05 nothing explodes, at 2 even max_norm 1 does.
    "stability": Study("stability", "explode", (("lr", (0.05, 0.2, 0.5, 2.0)), ("clip", (None, 20.0, 5.0, 1.0))),
                       "NNDL 6.2: does the SRN explode, for each learning rate and clipping threshold"),
}


@dataclass(frozen=True)
class Job:
    """One run of the sweep: a point of the grid with one seed, and the config that trains it."""

    key: int  # its place in the sweep (rows, messages and results are keyed by it)
    point: dict  # axis -> value
    seed: int
    config: TrainConfig


@dataclass
class SweepSpec:
    study: str  # "" for a grid that is no built-in study
    preset: str
    axes: dict  # key -> list of values, in table order
    seeds: list
    fixed: dict = field(default_factory=dict)  # options every point shares (--epochs)

    def points(self) -> list[dict]:
        keys = list(self.axes)
        return [dict(zip(keys, values)) for values in itertools.product(*self.axes.values())]

    def grid(self) -> dict:
        return {key: list(values) for key, values in self.axes.items()}


def parse_value(key: str, text: str):
    """One value of an axis, as the option's type wants it."""
    kind = GRID_KEYS[key]
    word = text.strip().lower()
    if kind == "float | None" and word in ("none", "off"):
        return None
    try:
        if kind == "bool":
            if word not in _TRUE + _FALSE:
                raise ValueError
            return word in _TRUE
        if kind == "int":
            return int(word)
        if kind in ("float", "float | None"):
            value = float(word)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        wanted = {"bool": "true or false", "int": "a whole number"}.get(kind, "a number")
        wanted += " or none" if kind == "float | None" else ""
        raise GridError(f"--grid {key}: {text.strip()!r} is not {wanted}") from None
    return text.strip()


def parse_axis(text: str) -> tuple[str, list]:
    """``KEY=V1,V2`` -> (key, values); the key spelt as the option (``clip-type``) or the field."""
    if "=" not in text:
        raise GridError(f"--grid wants KEY=V1,V2,..., not {text!r}")
    name, _, values = text.partition("=")
    key = name.strip().lstrip("-").replace("-", "_")
    if key not in GRID_KEYS:
        raise GridError(f"--grid: unknown option {name.strip()!r} (choose from {', '.join(sorted(GRID_KEYS))})")
    items = values.split(",")
    if not values.strip():
        raise GridError(f"--grid {key}: no values")
    if not all(item.strip() for item in items):  # "lr=0.1,,0.2": a value left out, not one to skip
        raise GridError(f"--grid {key}: an empty value in {values.strip()!r}")
    parsed = [parse_value(key, item) for item in items]
    if len(set(map(repr, parsed))) != len(parsed):
        raise GridError(f"--grid {key}: a value is given twice in {values.strip()!r}")
    return key, parsed


def make_spec(study: str | None = None, preset: str | None = None, grid: list[str] | None = None,
              seeds: int = 1, epochs: int | None = None) -> SweepSpec:
    """The study's (or preset's) axes, then each ``--grid`` axis added or replacing one of the same key.

    A study's own axes apply when its preset is the base; ``--preset`` alone starts from no axes
    (``memory`` by default, the memory study)."""
    if study and preset:
        raise GridError(f"--study {study} sets the preset ({STUDIES[study].preset}); give --study or --preset")
    if preset and preset not in PRESETS:
        raise GridError(f"--preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    chosen = STUDIES[study or "memory"]
    base = preset or chosen.preset
    axes = {key: list(values) for key, values in chosen.axes} if base == chosen.preset else {}
    given: set[str] = set()
    for text in grid or []:
        key, values = parse_axis(text)
        if key in given:
            raise GridError(f"--grid {key} is given twice")
        given.add(key)
        axes[key] = values
    if seeds < 1:
        raise GridError(f"--seeds must be at least 1, not {seeds}")
    if "seed" in axes and seeds > 1:
        raise GridError("give the seeds either as --seeds N or as --grid seed=..., not both")
    if "epochs" in axes and epochs is not None:
        raise GridError("give the epochs either as --epochs N or as --grid epochs=..., not both")
    if epochs is not None and epochs < 1:
        raise GridError(f"--epochs must be at least 1, not {epochs}")
    first = build_config(base).seed  # the preset's seed: one seed reproduces a plain run of it
    name = chosen.name if base == chosen.preset else ""
    return SweepSpec(study=name, preset=base, axes=axes, seeds=list(range(first, first + seeds)),
                     fixed={"epochs": epochs} if epochs is not None else {})


def spell(value) -> str:
    """An axis value as ``--grid`` takes it: clipping off is ``none``; a number in its short form
    (``0.2``, ``2``) when that is the value, else in the digits that tell it apart (``0.1234561``)."""
    if value is None:
        return "none"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def _spell(key: str, value) -> str:
    if key == "cell":
        return str(value)
    return {"length": "L", "seed": "s"}.get(key, key.replace("_", "")) + spell(value)


def run_name(point: dict, seed: int, several_seeds: bool) -> str:
    """``srn-L10``, ``lr0.2-clipnone-s6``: the point's values, as a file name may hold them."""
    parts = [_spell(key, value) for key, value in point.items()]
    if several_seeds:
        parts.append(f"s{seed}")
    return re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts) or "run")


def make_jobs(spec: SweepSpec, sweep_id: str, *, impl: str = "auto", runs_dir: str = "runs",
              checkpoint_dir: str = "checkpoints", data_dir: str = "") -> list[Job]:
    """Every (point, seed), its config built and checked: a bad combination fails here, naming its point."""
    try:  # the options every point shares, said as themselves when they are what is wrong
        build_config(spec.preset, runs_dir=runs_dir, checkpoint_dir=checkpoint_dir, data_dir=data_dir or None,
                     **spec.fixed)
    except ConfigError as error:
        raise GridError(str(error)) from None
    jobs, names = [], {}
    for point in spec.points():
        for seed in spec.seeds if "seed" not in point else [point["seed"]]:
            values = {**spec.fixed, "seed": seed, **point}
            chosen = values.get("impl", impl)
            try:
                config = build_config(spec.preset, runs_dir=runs_dir, checkpoint_dir=checkpoint_dir,
                                      data_dir=data_dir or None, **values)
            except ConfigError as error:
                raise GridError(f"--grid point {_point_text(point)}: {error}" if point else str(error)) from None
            if "impl" not in point:
                chosen = FASTEST_IMPL[config.cell] if impl == "auto" else impl
            # naive (the textbook's cells) trains the scratch model's function the slow way
            name = run_name(point, seed, len(spec.seeds) > 1)
            if name in names:  # one run's log and checkpoints would overwrite the other's
                raise GridError(f"--grid points {names[name]} and {_point_text(point)} would share the run name {name}")
            names[name] = _point_text(point)
            config = replace(config, impl=chosen, run_id=f"{sweep_id}-{name}")
            jobs.append(Job(key=len(jobs), point=point, seed=seed, config=config))
    return jobs


def _point_text(point: dict) -> str:
    return " ".join(f"{key}={'none' if value is None else value}" for key, value in point.items())


def log_path(job: Job) -> str:
    """Where this run's log lands on the machine that started the sweep."""
    return os.path.join(job.config.runs_dir, f"{job.config.run_id}.jsonl")
