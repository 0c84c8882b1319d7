"""Gradient norms of every step and the alarms raised on them.

The norms of all parameters come from one batched computation and one device->host transfer;
clipping reuses them instead of measuring the gradients again. ``GradientNorms`` is the runner's fast
path (views built once); ``measure`` does the same for any dict of gradients.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field

import torch

NORM_ORDERS = {"2": 2.0, "1": 1.0, "inf": math.inf}


@dataclass
class StepNorms:
    per_parameter: dict[str, float]  # textbook name -> L2 norm of its gradient (pre-clip)
    total: float  # norm of all gradients together, in the clip's norm type


def measure(gradients: dict[str, torch.Tensor | None], norm_type: str = "2") -> StepNorms:
    """All per-parameter L2 norms and the total norm (in ``norm_type``) with one host transfer."""
    names = [name for name, grad in gradients.items() if grad is not None]
    grads = [gradients[name] for name in names]
    if not grads:
        return StepNorms({name: 0.0 for name in gradients}, 0.0)
    values, total = _norms(grads, grads, norm_type)
    per_parameter = dict.fromkeys(gradients, 0.0)
    per_parameter.update(zip(names, values))
    return StepNorms(per_parameter, total)


def _norms(views: list[torch.Tensor], grads: list[torch.Tensor], norm_type: str) -> tuple[list[float], float]:
    """Per-view L2 norms and the total norm in ``norm_type``: one batched computation per order,
    one host transfer. The views partition the parameters' gradients, so a total in another order
    is taken over the (fewer) gradients themselves."""
    norms = torch._foreach_norm(views, 2.0)  # [views] 0-d tensors
    if norm_type == "2":
        values = torch.stack(norms).tolist()  # the one sync point of the step
        return values, math.sqrt(sum(v * v for v in values))
    both = torch.stack(norms + torch._foreach_norm(grads, NORM_ORDERS[norm_type])).tolist()
    values, other = both[: len(views)], both[len(views):]
    return values, (sum(other) if norm_type == "1" else max(other))


class GradientNorms:
    """Every step's norms for one model, as cheaply as one batched computation can give them.

    Building the textbook-named gradient views (slices of PyTorch's packed ``weight_ih_l0`` and
    friends) costs more than the norms themselves, so the views are built once and reused while
    every parameter keeps the same ``.grad`` tensor (``zero_grad(set_to_none=False)`` and backward
    write into it in place); a ``.grad`` that is replaced or set to None rebuilds them. The norms are
    one ``torch._foreach_norm`` over the views and one host transfer; clipping is one
    ``torch._foreach_mul_`` over the parameters' gradients.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.linked: list | None = None  # each parameter's .grad when the views were built
        self.all_names: list[str] = []
        self.names: list[str] = []  # the names that have a gradient
        self.views: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []  # the parameters' own gradients, for clipping

    def _current(self) -> bool:
        linked = self.linked
        return linked is not None and all(p.grad is g for p, g in zip(self.parameters, linked))

    def _link(self) -> None:
        gradients = self.model.textbook_gradients()
        self.all_names = list(gradients)
        self.names = [name for name, grad in gradients.items() if grad is not None]
        self.views = [gradients[name] for name in self.names]
        self.linked = [p.grad for p in self.parameters]
        self.grads = [g for g in self.linked if g is not None]

    def measure(self, norm_type: str = "2") -> StepNorms:
        if not self._current():
            self._link()
        if not self.views:
            return StepNorms(dict.fromkeys(self.all_names, 0.0), 0.0)
        values, total = _norms(self.views, self.grads, norm_type)
        if len(self.names) == len(self.all_names):
            return StepNorms(dict(zip(self.names, values)), total)
        per_parameter = dict.fromkeys(self.all_names, 0.0)
        per_parameter.update(zip(self.names, values))
        return StepNorms(per_parameter, total)

    def scale(self, factor: float) -> None:
        """Multiply every gradient by ``factor`` (what clipping does) in one batched operation."""
        if not self._current():
            self._link()
        if self.grads:
            torch._foreach_mul_(self.grads, factor)


def copy_state(value):
    """A deep copy of parameters or an optimizer's ``state_dict()`` for the rewind ring: tensors
    cloned, dicts and lists rebuilt, everything else shared (immutable). About 5x cheaper than
    ``copy.deepcopy``, which the monitored loop would otherwise pay every snapshot."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: copy_state(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_state(item) for item in value]
    return value


def clip_factor(total: float, max_norm: float) -> float:
    """What clip_grad_norm_ multiplies the gradients by: max_norm / (total + 1e-6), at most 1."""
    if not math.isfinite(total):
        return 0.0
    return min(1.0, max_norm / (total + 1e-6))


@dataclass
class AlarmReport:
    kind: str  # explosion | non_finite | saturation | healthy
    parameter: str
    value: float
    ratio: float
    median: float
    message: str


class RecentNorms:
    """The last ``size`` norms of one parameter; the positive ones are also kept sorted, so the running
    median costs a lookup instead of a sort every step."""

    __slots__ = ("values", "positive", "size")

    def __init__(self, size: int):
        self.values: deque = deque()  # in arrival order
        self.positive: list[float] = []  # the positive values among them, sorted
        self.size = size

    def push(self, value: float) -> None:
        values = self.values
        if len(values) == self.size:
            old = values.popleft()
            if old > 0.0:
                del self.positive[bisect_left(self.positive, old)]
        values.append(value)
        if value > 0.0:
            insort(self.positive, value)

    def median(self) -> float:
        """Median of the positive recent norms (as statistics.median; the window holds at least one)."""
        positive = self.positive
        middle = len(positive) // 2
        if len(positive) % 2:
            return positive[middle]
        return (positive[middle - 1] + positive[middle]) / 2

    def __iter__(self):
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class AlarmWatch:
    """Raises an alarm when a gradient norm jumps far above its recent running median (explosion),
    when the loss or a gradient is non-finite, or when norms collapse to ~0 after having been large
    while the loss stays high (saturation). Says ``healthy`` once a raised alarm has cleared."""

    ratio_threshold: float = 100.0  # explosion: norm / running median of the last `window` norms
    window: int = 50
    peak_factor: float = 10.0  # ... and at least this many times the largest norm seen before
    minimum_norm: float = 1e-3  # ignore jumps among negligible norms
    collapse_ratio: float = 1e-4  # saturation: norm below this fraction of its peak ...
    collapse_steps: int = 5  # ... for this many steps in a row
    healthy_steps: int = 20  # steps without trouble before an alarm is declared over
    history: dict = field(default_factory=dict)
    peaks: dict = field(default_factory=dict)
    collapsed: dict = field(default_factory=dict)
    active: str = ""  # kind of the latest alarm in force, "" when healthy
    raised: set = field(default_factory=set)  # kinds raised since the run was last healthy
    last_value: float = 0.0
    quiet: int = 0
    first_loss: float | None = None

    def reset(self) -> None:
        """Forget everything (after a rewind the old history describes other weights)."""
        self.history.clear()
        self.peaks.clear()
        self.collapsed.clear()
        self.active, self.quiet, self.last_value = "", 0, 0.0
        self.raised.clear()

    def _raise(self, report: AlarmReport, reports: list[AlarmReport]) -> None:
        reports.append(report)
        self.active = report.kind
        self.raised.add(report.kind)

    def observe(self, loss: float, norms: dict[str, float]) -> list[AlarmReport]:
        reports: list[AlarmReport] = []
        trouble = False
        bad = [name for name, value in norms.items() if not math.isfinite(value)]
        if not math.isfinite(loss) or bad:
            trouble = True
            if "non_finite" not in self.raised:
                parameter = bad[0] if bad else "loss"
                value = norms[parameter] if bad else loss
                self._raise(AlarmReport("non_finite", parameter, value, math.inf, 0.0,
                                        f"{parameter} is {value}: the update was skipped"), reports)
            return self._settle(reports, trouble)
        if self.first_loss is None:
            self.first_loss = loss
        explosion = self._worst_jump(norms)
        if explosion is not None:
            trouble = True
            name, value, median, ratio = explosion
            # once raised, an explosion is announced again only if it grows another tenfold
            if "explosion" not in self.raised or value > 10 * self.last_value:
                self._raise(AlarmReport("explosion", name, value, ratio, median,
                                        f"{name} gradient norm {value:.3g} is {ratio:.3g}x its recent median"),
                            reports)
                self.last_value = value
        saturated = self._collapsed(loss, norms)
        if saturated is not None:
            trouble = True
            name, value, peak = saturated
            if "saturation" not in self.raised:
                self._raise(AlarmReport("saturation", name, value, value / peak if peak else 0.0, peak,
                                        f"{name} gradient norm fell to {value:.3g} from a peak of {peak:.3g} "
                                        "while the loss stays high: the units are saturated"), reports)
        history, peaks = self.history, self.peaks
        for name, value in norms.items():
            window = history.get(name)
            if window is None:
                window = history[name] = RecentNorms(self.window)
            window.push(value)
            if value > peaks.get(name, 0.0):
                peaks[name] = value
        return self._settle(reports, trouble)

    def _settle(self, reports: list[AlarmReport], trouble: bool) -> list[AlarmReport]:
        if trouble:
            self.quiet = 0
        elif self.active:
            self.quiet += 1
            if self.quiet >= self.healthy_steps:
                reports.append(AlarmReport("healthy", "", 0.0, 0.0, 0.0,
                                           f"no trouble for {self.healthy_steps} steps"))
                self.active, self.quiet = "", 0
                self.raised.clear()
        return reports

    def _worst_jump(self, norms: dict[str, float]):
        worst = None
        history, minimum = self.history, self.minimum_norm
        for name, value in norms.items():
            window = history.get(name)
            if window is None or value < minimum or not window.positive:
                continue
            median = window.median()
            ratio = value / median
            # A spike over a tiny median late in healthy training is no explosion: the norm must
            # also dwarf the largest it has ever been.
            beyond_peak = value >= self.peak_factor * self.peaks.get(name, 0.0)
            if ratio >= self.ratio_threshold and beyond_peak and (worst is None or ratio > worst[3]):
                worst = (name, value, median, ratio)
        return worst

    def _collapsed(self, loss: float, norms: dict[str, float]):
        if self.first_loss is None or loss < 0.5 * self.first_loss:
            self.collapsed.clear()
            return None
        found = None
        for name, value in norms.items():
            peak = self.peaks.get(name, 0.0)
            if peak > 1.0 and value < self.collapse_ratio * peak:
                self.collapsed[name] = self.collapsed.get(name, 0) + 1
                if self.collapsed[name] >= self.collapse_steps and found is None:
                    found = (name, value, peak)
            else:
                self.collapsed[name] = 0
        return found
