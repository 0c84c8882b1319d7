"""The event stream: the only thing the engine and the TUI share.

Pure Python (dataclasses and json only) so that both sides can import it without
pulling in torch or textual. One event or command is one JSON object on one line.

Every event carries ``type``, ``run``, ``step`` and ``t`` (seconds since the run
started). Commands travel the other way (``engine/commands.py``), on the child's
standard input, and carry only ``type`` and their own fields.

Non-finite floats are the values the alarms are about, and strict JSON has no
spelling for them, so they are written as ``{"$float": "nan"}``, ``"inf"`` or
``"-inf"`` and read back as floats.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .jsontypes import field_checks

SCHEMA_VERSION = 2  # 2: settings travel as their own event; Step and Status no longer repeat them

EVENT_TYPES: dict[str, type["Event"]] = {}


class DecodeError(ValueError):
    """A line that is not a well-formed event or command."""


# --- non-finite floats ---------------------------------------------------

_NONFINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_value(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, dict):
        return {key: _encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(item) for item in value]
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "$float" in value:
            try:
                return _NONFINITE_NAMES[value["$float"]]
            except (KeyError, TypeError):
                raise DecodeError(f"unknown float spelling {value['$float']!r}") from None
        return {key: _decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_value(item) for item in value]
    return value


_FLOAT32 = struct.Struct("f")


def single_precision(value: float) -> float:
    """``value`` in the 8 significant digits that read back as the same float32 when they do, else the
    9 that always do: its JSON spelling is half as long. The loss and the gradient norms are float32
    sums; 8 digits suffice for about four in five of them, and a gzipped log is 6% smaller for it."""
    shorter = float("%.8g" % value)
    try:
        if _FLOAT32.unpack(_FLOAT32.pack(shorter))[0] == value:
            return shorter
    except OverflowError:  # beyond float32's range: not one of its numbers
        pass
    return float("%.9g" % value)


# one encoder for every line (json.dumps would build one per call); strict JSON has no NaN
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _short(value: float) -> float:
    """An instrument's reading to 6 significant digits: more than a chart or a bound needs."""
    return float(f"{value:.6g}") if isinstance(value, float) else value


# --- base classes --------------------------------------------------------


@dataclass(frozen=True)
class Message:
    type: ClassVar[str] = ""
    REQUIRED: ClassVar[tuple[str, ...]] = ()  # fields a line must carry: without them it is malformed

    def to_dict(self) -> dict[str, Any]:
        payload = {"type": self.type}
        for name in _field_names(type(self)):
            payload[name] = getattr(self, name)
        return payload

    def to_json(self) -> str:
        payload = self.to_dict()
        try:  # the common case: every value finite, written as it is
            return _ENCODER.encode(payload)
        except ValueError:  # NaN or infinity somewhere: spelled out explicitly
            return _ENCODER.encode(_encode_value(payload))


@dataclass(frozen=True)
class Event(Message):
    REQUIRED: ClassVar[tuple[str, ...]] = ("step",)
    run: str = ""
    step: int = 0
    t: float = 0.0


def registered(registry: dict[str, type]):
    """A class decorator maker: ``@event("step")`` names a message type and files it in ``registry``."""
    def named(name: str):
        def wrap(cls):
            cls.type = name
            registry[name] = cls
            return cls

        return wrap

    return named


event = registered(EVENT_TYPES)


# --- events --------------------------------------------------------------


@event("run_started")
@dataclass(frozen=True)
class RunStarted(Event):
    schema: int = SCHEMA_VERSION
    config: dict = field(default_factory=dict)  # the full TrainConfig as a dict
    parameters: dict = field(default_factory=dict)  # textbook name -> shape
    dataset: dict = field(default_factory=dict)  # split -> number of examples
    device: str = "cpu"
    total_steps: int = 0
    steps_per_epoch: int = 0
    vocabulary: list = field(default_factory=list)  # tokens of the input alphabet
    settings: dict = field(default_factory=dict)  # the starting Settings' fields (clip_on, lr, ...)


@event("step")
@dataclass(frozen=True)
class Step(Event):
    """One training step. The settings it ran under are the latest Settings event's."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("step", "loss", "grad_norms", "total_norm")

    epoch: int = 0  # 1-based
    loss: float = 0.0
    grad_norms: dict[str, float] = field(default_factory=dict)  # textbook name -> pre-clip L2 norm
    total_norm: float = 0.0  # pre-clip norm of all gradients, in the clip's norm type
    clip_factor: float = 1.0  # what clipping multiplied the gradients by (1 = untouched)
    skipped: bool = False  # the update was skipped (non-finite loss or gradient)
    steps_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        payload = super().to_dict()  # written for every step: the one dict, its floats replaced
        payload["loss"] = single_precision(self.loss)
        payload["grad_norms"] = {name: single_precision(value) for name, value in self.grad_norms.items()}
        payload["total_norm"] = single_precision(self.total_norm)
        return payload


@event("settings")
@dataclass(frozen=True)
class Settings(Event):
    """How training is set up from this step on: sent at the start and whenever a setting changes
    (the answer to set_clip, set_lr and set_speed), so every chart can mark the change."""

    clip_on: bool = False
    clip_max_norm: float = 20.0  # the threshold, kept while clipping is off
    clip_norm_type: str = "2"  # "2", "1" or "inf"
    lr: float = 0.0
    speed: float = 0.0  # steps/s cap, 0 = unlimited
    cause: str = "start"  # start | command | resume | rewind


@event("eval")
@dataclass(frozen=True)
class Eval(Event):
    split: str = "dev"
    accuracy: float | None = None
    perplexity: float | None = None
    loss: float = 0.0
    is_best: bool = False
    best: float | None = None  # best score so far on this split (accuracy, or perplexity)

    def to_dict(self) -> dict[str, Any]:  # its loss is a float32 mean, as a step's
        return {**super().to_dict(), "loss": single_precision(self.loss)}


@event("alarm")
@dataclass(frozen=True)
class Alarm(Event):
    REQUIRED: ClassVar[tuple[str, ...]] = ("step", "kind", "value")
    kind: str = "explosion"  # explosion | non_finite | saturation | healthy
    parameter: str = ""
    value: float = 0.0
    ratio: float = 0.0  # value / running median of its recent norms
    median: float = 0.0
    message: str = ""


@event("gates")
@dataclass(frozen=True)
class Gates(Event):
    tokens: list = field(default_factory=list)  # input tokens, one per time step
    cell: str = "lstm"
    # gate name -> hidden x time matrix (rows = hidden units, columns = time steps)
    matrices: dict = field(default_factory=dict)
    request: str = ""  # "probe" for the automatic refresh, else the console input


@event("flow")
@dataclass(frozen=True)
class Flow(Event):
    """Gradient flow through time at one training step, measured on its batch before its update by
    the textbook equations with the model's weights (``engine/instruments.py``)."""

    grad_h_norms: list[float] = field(default_factory=list)  # ‖∂L/∂h_t‖ for t = 1..T (first layer)
    ratio: float = 0.0  # ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ (NaN when nothing reaches h_T)
    sigma_max: dict[str, float] = field(default_factory=dict)  # recurrent matrix name (U, U_f, ...) -> σ_max
    inverse_gamma: dict[str, float] = field(default_factory=dict)  # the same names -> Pascanu's bound 1/γ
    jacobian_sigma_max: float = 0.0  # σ_max(∂h_T/∂h_{T-1}), mean over the batch's first 8 examples

    def to_dict(self) -> dict[str, Any]:
        payload = super().to_dict()
        payload["grad_h_norms"] = [_short(value) for value in self.grad_h_norms]
        payload["ratio"] = _short(self.ratio)
        payload["sigma_max"] = {name: _short(value) for name, value in self.sigma_max.items()}
        payload["jacobian_sigma_max"] = _short(self.jacobian_sigma_max)
        return payload


@event("saturation")
@dataclass(frozen=True)
class Saturation(Event):
    """Gate saturation on a split at an evaluation (Karpathy, Johnson & Fei-Fei 2015)."""

    split: str = "dev"
    cell: str = "srn"
    low: dict[str, float] = field(default_factory=dict)  # gate name -> share of its activations below 0.1
    high: dict[str, float] = field(default_factory=dict)  # gate name -> share above 0.9
    hidden_saturated: float = 0.0  # share of hidden activations with |h| > 0.99


@event("prediction")
@dataclass(frozen=True)
class Prediction(Event):
    tokens: list = field(default_factory=list)
    predicted: float = 0.0  # class index, or the regression value
    top: list = field(default_factory=list)  # [[label, probability], ...] best first
    target: int | None = None  # the true sum of the first two digits, when known


@event("generation")
@dataclass(frozen=True)
class Generation(Event):
    prefix: str = ""
    text: str = ""  # the characters produced so far by this chunk
    done: bool = False
    unknown: list = field(default_factory=list)  # prefix characters outside the vocabulary
    request_id: int = 0


@event("weights")
@dataclass(frozen=True)
class Weights(Event):
    """Which weights answer the console once the run has finished: the final ones (as training left
    them) or the best dev checkpoint's. Sent when the finished run starts answering and on each switch."""

    which: str = "final"  # final | best
    checkpoint: str = ""  # the checkpoint holding these weights
    trained_steps: int = 0  # the training step they were taken at
    score: float | None = None  # their dev score (accuracy or perplexity), when known


@event("checkpoint")
@dataclass(frozen=True)
class Checkpoint(Event):
    path: str = ""
    kind: str = "last"  # best | last
    score: float | None = None


@event("status")
@dataclass(frozen=True)
class Status(Event):
    state: str = "running"  # running | paused | finished | stopped | failed
    message: str = ""


@event("notice")
@dataclass(frozen=True)
class Notice(Event):
    """A one-line answer to a command (accepted, refused, malformed input)."""

    level: str = "info"  # info | warning | error
    message: str = ""


@event("run_finished")
@dataclass(frozen=True)
class RunFinished(Event):
    reason: str = "finished"  # finished | stopped | failed
    best_dev: float | None = None
    test_accuracy: float | None = None
    test_perplexity: float | None = None
    checkpoint: str = ""


# --- decoding ------------------------------------------------------------


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def from_dict(payload: Any, registry: dict[str, type], nonfinite: bool = True) -> Message:
    if not isinstance(payload, dict):
        raise DecodeError("not a JSON object")
    kind = payload.get("type")
    cls = registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError(f"unknown type {kind!r}")
    known = _field_names(cls)
    if nonfinite:
        values = {key: _decode_value(value) for key, value in payload.items() if key in known}
    else:
        values = {key: value for key, value in payload.items() if key in known}
    # A field of the wrong type would fail far from here (a comparison in a chart, an export), so the
    # line is refused as malformed instead.
    for name, annotation, check in field_checks(cls):
        if name in values and not check(values[name]):
            raise DecodeError(f"{kind} field {name} is not {getattr(annotation, '__name__', annotation)}: "
                              f"{values[name]!r:.40}")
    missing = [name for name in cls.REQUIRED if name not in values]  # a bare {"type":"step"} is no step
    if missing:
        raise DecodeError(f"{kind} without {', '.join(missing)}")
    try:
        return cls(**values)
    except TypeError as error:
        raise DecodeError(str(error)) from None


def loads(line: str | bytes) -> Any:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DecodeError(f"not JSON: {error}") from None


def from_json(line: str | bytes) -> Event:
    """Decode one line of the event stream. Unknown fields are ignored (newer writers)."""
    marker = b"$float" if isinstance(line, bytes) else "$float"
    # Only a line that spells a non-finite float needs the recursive walk.
    return from_dict(loads(line), EVENT_TYPES, marker in line)  # type: ignore[return-value]
