"""A run log to the tools people already use: TensorBoard event files (``--tensorboard DIR``) and CSV.

Pure Python, no torch: the log is read once, in order, and each event becomes a ``Record``, the values
it carries under TensorBoard tags (``grad_norm/W``, ``grad_norm/total``, ``loss/train``,
``accuracy/dev``, ``clip_factor``, ``lr``, ...) and any profile over the time steps of the sequence
(written as a histogram whose buckets are the time steps 1..T, so TensorBoard's histogram view draws
the profile). What each event type gives is one function in ``CONVERTERS``: an instrument added to
the event stream is one more entry there.

The settings a step ran under (lr, clipping) come from the latest ``settings`` event, else from the
run's config.
"""

from __future__ import annotations

import csv
import math
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .events import DecodeError, Event, from_json
from .logs import log_problem, open_log

INSTALL_HINT = "TensorBoard export needs the tensorboard package: pip install 'rnnlab-tui[tensorboard]'"
SETTINGS = ("lr", "clip_on", "clip_max_norm", "clip_norm_type")


class ExportError(ValueError):
    """An export that cannot be made (a missing extra, a target that exists); one line for the user."""


@dataclass
class Record:
    step: int
    t: float
    scalars: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, list[float]] = field(default_factory=dict)  # tag -> one value per time step
    row: dict | None = None  # a training step's CSV row (None for the other events)


@dataclass
class Run:
    """What the converters need to know of the run so far."""

    id: str = ""
    settings: dict = field(default_factory=dict)  # lr, clip_on, clip_max_norm, clip_norm_type
    metric: str = "accuracy"  # accuracy (digits) | perplexity (lm)
    last_t: float = 0.0


def _run_started(event, run: Run) -> Record | None:
    config = event.config or {}
    run.id = event.run
    run.metric = "perplexity" if config.get("task") == "lm" else "accuracy"
    run.settings.update(lr=config.get("lr"), clip_on=config.get("clip") is not None,
                        clip_max_norm=config.get("clip"), clip_norm_type=config.get("clip_type"))
    run.settings.update({name: value for name, value in (getattr(event, "settings", None) or {}).items()
                         if name in SETTINGS})
    return None


def _settings(event, run: Run) -> Record | None:
    run.settings.update({name: getattr(event, name) for name in SETTINGS if hasattr(event, name)})
    return None


def _step(event, run: Run) -> Record:
    scalars = {"loss/train": event.loss}
    scalars.update((f"grad_norm/{name}", value) for name, value in event.grad_norms.items())
    scalars.update({"grad_norm/total": event.total_norm, "clip_factor": event.clip_factor,
                    "lr": run.settings.get("lr")})
    row = {"step": event.step, "epoch": event.epoch, "t": event.t, **scalars,
           "clip_on": run.settings.get("clip_on"), "clip_max_norm": run.settings.get("clip_max_norm"),
           "clip_norm_type": run.settings.get("clip_norm_type"), "skipped": event.skipped,
           "steps_per_s": event.steps_per_s}
    # the config and settings the lr comes from are free-form dictionaries: only a number is a scalar
    numbers = {tag: value for tag, value in scalars.items() if isinstance(value, (int, float))}
    return Record(event.step, event.t, numbers, row=row)


def _eval(event, run: Run) -> Record:
    scalars = {f"loss/{event.split}": event.loss}
    for metric in ("accuracy", "perplexity"):
        value = getattr(event, metric)
        if value is not None:
            scalars[f"{metric}/{event.split}"] = value
    return Record(event.step, event.t, scalars)


def _flow(event, run: Run) -> Record:
    """‖∂L/∂h_t‖ over the time steps as a profile (a histogram, bucket t = step t), σ_max as scalars."""
    scalars = {f"sigma_max/{name}": value for name, value in event.sigma_max.items()}
    scalars.update({"sigma_max/step_jacobian": event.jacobian_sigma_max, "grad_h/ratio_first_last": event.ratio})
    norms = event.grad_h_norms
    finite = all(isinstance(value, (int, float)) and math.isfinite(value) for value in norms)
    profiles = {"grad_h/norm_by_time_step": norms} if finite and norms else {}
    return Record(event.step, event.t, scalars, profiles=profiles)


def _saturation(event, run: Run) -> Record:
    scalars = {f"saturation/{name}_below_0.1": value for name, value in event.low.items()}
    scalars.update((f"saturation/{name}_above_0.9", value) for name, value in event.high.items())
    scalars["saturation/hidden_above_0.99"] = event.hidden_saturated
    return Record(event.step, event.t, scalars)


# event type -> what it gives; None: nothing to export, the event only updates ``Run``
CONVERTERS: dict[str, Callable[[Event, Run], Record | None]] = {
    "run_started": _run_started,
    "settings": _settings,
    "step": _step,
    "eval": _eval,
    "flow": _flow,
    "saturation": _saturation,
}


def read_records(path: str) -> tuple[list[Record], Run, int]:
    """The records of a log (plain or .gz), the run they describe, and how many lines could not be read."""
    run, records, bad = Run(), [], 0
    for event in _events(path):
        if event is None:
            bad += 1
            continue
        run.last_t = max(run.last_t, event.t)
        convert = CONVERTERS.get(event.type)
        record = convert(event, run) if convert else None
        if record is not None:
            records.append(record)
    return records, run, bad


def _events(path: str) -> Iterator[Event | None]:
    """Each event of the log in order; None for a line that could not be read."""
    with open_log(path) as handle:
        try:
            for line in handle:
                if line.strip():
                    try:
                        yield from_json(line)
                    except DecodeError:
                        yield None
        except (EOFError, OSError, zlib.error):  # a .gz cut short: what came before it stands
            yield None


# --- CSV ---------------------------------------------------------------------


def write_csv(records: list[Record], run: Run, path: str) -> int:
    """One row per training step, an evaluation's values in the row of the step it was made at.
    Floats are written as Python spells them (they read back exactly); returns the number of rows."""
    rows = []
    by_step: dict[int, dict] = {}
    for record in records:
        if record.row is not None:
            by_step[record.step] = dict(record.row)
            rows.append(by_step[record.step])
        elif record.step in by_step:
            by_step[record.step].update(record.scalars)
    columns = list(rows[0]) if rows else ["step"]
    extra = sorted({name for row in rows for name in row} - set(columns))
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns + extra, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)
    return len(rows)


# --- TensorBoard -------------------------------------------------------------


def load_tensorboard():
    """tensorboard's event-file writer and protocol buffers; ExportError when the extra is missing."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event as TBEvent
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise ExportError(INSTALL_HINT) from None
    return TBEvent, Summary, HistogramProto, EventFileWriter


def write_tensorboard(records: list[Record], run: Run, folder: str, start: float) -> str:
    """Event files for the run in ``folder/<run-id>`` (``tensorboard --logdir folder`` lists it beside
    other runs); wall times are ``start`` plus each event's ``t``. Returns the run's folder.

    One TensorBoard event per log event, holding all its values (about 20 times faster than one call
    per value through a SummaryWriter, for the 19,000 steps of a memory run). Written into a
    temporary folder that is renamed when complete, so an interrupted export leaves nothing half done.
    """
    TBEvent, Summary, HistogramProto, EventFileWriter = load_tensorboard()
    target = tensorboard_target(folder, run)
    temporary = os.path.join(folder, f".{os.path.basename(target)}.tmp-{os.getpid()}")
    writer = EventFileWriter(temporary)
    try:
        for record in records:
            values = [Summary.Value(tag=tag, simple_value=value) for tag, value in record.scalars.items()]
            values += [Summary.Value(tag=tag, histo=_profile(HistogramProto, profile))
                       for tag, profile in record.profiles.items()]
            if values:
                writer.add_event(TBEvent(wall_time=start + record.t, step=record.step,
                                         summary=Summary(value=values)))
    finally:
        writer.close()
    os.replace(temporary, target)
    return target


def tensorboard_target(folder: str, run: Run) -> str:
    """``folder/<run-id>``, which must not exist yet: an export never writes into an earlier one."""
    target = os.path.join(folder, safe_name(run.id))
    if os.path.lexists(target):
        raise ExportError(f"{target} already exists: remove it or export to another --tensorboard folder")
    return target


def safe_name(run_id: str) -> str:
    """The run id as a folder name: the log is read from outside, and its id must not reach ``..`` or
    another folder, nor put a control character on the terminal."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", run_id).lstrip(".")
    return name or "run"


def _profile(HistogramProto, values: list[float]):
    """A profile over time steps as a histogram: bucket t (1..T) holds the value at time step t."""
    steps = range(1, len(values) + 1)
    total = math.fsum(values)
    return HistogramProto(min=1.0, max=float(len(values)), num=total,
                          sum=math.fsum(t * v for t, v in zip(steps, values)),
                          sum_squares=math.fsum(t * t * v for t, v in zip(steps, values)),
                          bucket_limit=[float(t) for t in steps], bucket=list(values))


def export(path: str, tensorboard: str | None = None, csv_path: str | None = None) -> list[str]:
    """Export the log at ``path``; returns one line per thing written."""
    if tensorboard:
        load_tensorboard()  # a missing extra is said before the log is read
    _check_targets(csv_path, tensorboard)
    problem = log_problem(path)
    if problem:
        raise ExportError(problem)
    records, run, bad = read_records(path)
    if not run.id:
        raise ExportError(f"{path} is not an rnnlab-tui event log (no run_started event)")
    if tensorboard:
        tensorboard_target(tensorboard, run)  # checked before anything is written
    done = []
    if csv_path:
        done.append(f"wrote {write_csv(records, run, csv_path)} steps to {csv_path}")
    if tensorboard:
        # The log's last write is the end of the run: its start is that less the last event's t.
        start = os.path.getmtime(path) - run.last_t
        target = write_tensorboard(records, run, tensorboard, start)
        done.append(f"wrote {len(records)} events to {target} (tensorboard --logdir {tensorboard})")
    if bad:
        done.append(f"skipped {bad} unreadable lines of {path}")
    return done


def _check_targets(csv_path: str | None, tensorboard: str | None) -> None:
    """ExportError unless every file the export would write can be made: none is written otherwise."""
    if csv_path:
        if os.path.lexists(csv_path):
            raise ExportError(f"{csv_path} already exists: remove it or choose another --csv file")
        folder = os.path.dirname(os.path.abspath(csv_path))
        if not os.path.isdir(folder):  # a typo in the path must not become a tree of new folders
            raise ExportError(f"--csv {csv_path}: no folder {folder}")
    if tensorboard and os.path.lexists(tensorboard) and not os.path.isdir(tensorboard):
        raise ExportError(f"--tensorboard {tensorboard}: a file, not a folder")
