"""Gradient norms of every step, and the alarms raised on them.

All per-parameter norms of a step come from one batched computation (``torch._foreach_norm`` over the
textbook views) and one device->host transfer; clipping reuses their total instead of measuring the
gradients again.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

import torch

NORM_ORDERS = {"2": 2.0, "1": 1.0, "inf": math.inf}


@dataclass
class StepNorms:
    per_parameter: dict[str, float]  # textbook name -> L2 norm of its gradient (pre-clip)
    total: float  # norm of all gradients together, in the clip's norm type


def measure(gradients: dict[str, torch.Tensor | None], norm_type: str = "2",
            parameter_grads: list[torch.Tensor] | None = None) -> StepNorms:
    """Every textbook tensor's gradient L2 norm, and the total norm in ``norm_type``.

    The textbook views partition the parameters' gradients, so the L2 total is the root of the sum of
    their squares; a total in another order is taken over ``parameter_grads`` (the parameters' own
    gradients: fewer, larger tensors), in the same batched computation.
    """
    names = [name for name, grad in gradients.items() if grad is not None]
    views = [gradients[name] for name in names]
    per_parameter = dict.fromkeys(gradients, 0.0)
    if not views:
        return StepNorms(per_parameter, 0.0)
    norms = torch._foreach_norm(views, 2.0)  # [views] 0-d tensors
    if norm_type != "2":
        norms += torch._foreach_norm(parameter_grads or views, NORM_ORDERS[norm_type])
    values = torch.stack(norms).tolist()  # the one device->host transfer (a sync point) of the step
    if not math.isfinite(sum(values)):  # a square beyond float32's range, or a truly non-finite gradient
        values = [torch.linalg.vector_norm(view, dtype=torch.float64).item() for view in views] + values[len(views):]
    per_parameter.update(zip(names, values))
    if norm_type == "2":
        total = math.sqrt(sum(value * value for value in values[: len(names)]))
    elif norm_type == "1":
        total = sum(values[len(names):])
    else:
        total = max(values[len(names):])
    return StepNorms(per_parameter, total)


class GradientNorms:
    """``measure`` for one model, every step.

    The textbook views (slices of PyTorch's packed ``weight_ih_l0`` and friends) cost more to build
    than the norms themselves, so they are built once and reused while every parameter keeps the same
    ``.grad`` tensor: ``zero_grad(set_to_none=False)`` and backward write into it in place.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.linked: list = []  # each parameter's .grad when the views were built
        self.views: dict[str, torch.Tensor | None] = {}

    def measure(self, norm_type: str = "2") -> StepNorms:
        grads = [p.grad for p in self.parameters]
        if len(grads) != len(self.linked) or any(g is not old for g, old in zip(grads, self.linked)):
            self.views, self.linked = self.model.textbook_gradients(), grads
        return measure(self.views, norm_type, [g for g in grads if g is not None])

    def scale(self, factor: float) -> None:
        """Multiply every gradient by ``factor``, what ``clip_grad_norm_`` does with the same total."""
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, factor)


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
    ratio: float  # value / running median (explosion), value / peak (saturation)
    median: float  # the running median (explosion), the peak (saturation)
    message: str


@dataclass
class AlarmWatch:
    """Watches one step at a time and says what a student should notice.

    explosion   a norm jumps ``ratio_threshold`` times above the running median of its last ``window``
                values (and ``peak_factor`` times above the largest it has been: a steady climb is not
                an explosion), both at least ``minimum_norm``: a gradient that grows from almost
                nothing in a network's first steps is learning starting, not exploding;
    non_finite  the loss or a gradient is NaN or infinite (the runner skips that update);
    saturation  after having been large, a norm stays below ``collapse_ratio`` of its peak for
                ``collapse_steps`` steps while the loss stays high: the tanh units are saturated and
                the gradients vanish (NNDL 6.2.2's collapse after the explosion);
    healthy     ``healthy_steps`` steps without trouble after an alarm.
    """

    ratio_threshold: float = 100.0
    window: int = 50
    peak_factor: float = 10.0
    minimum_norm: float = 1e-3  # a jump from or to a negligible norm is not an explosion (a gate waking up)
    collapse_ratio: float = 1e-4
    collapse_steps: int = 5
    healthy_steps: int = 20
    recent: dict = field(default_factory=dict)  # name -> deque of its last `window` norms
    peaks: dict = field(default_factory=dict)  # name -> largest norm seen
    collapsed: dict = field(default_factory=dict)  # name -> steps in a row below collapse_ratio * peak
    active: str = ""  # the kind of the alarm in force, "" when healthy
    raised: set = field(default_factory=set)  # kinds raised since the run was last healthy
    last_explosion: float = 0.0
    quiet: int = 0  # steps without trouble since the last alarm
    first_loss: float | None = None

    def reset(self) -> None:
        """Forget the history: after a rewind it describes other weights."""
        self.recent.clear()
        self.peaks.clear()
        self.collapsed.clear()
        self.active, self.quiet, self.last_explosion = "", 0, 0.0
        self.raised.clear()

    def state_dict(self) -> dict:
        """Plain values (for a checkpoint): a resumed run raises the alarms the whole run would."""
        return {"recent": {name: list(values) for name, values in self.recent.items()}, "peaks": dict(self.peaks),
                "collapsed": dict(self.collapsed), "active": self.active, "raised": sorted(self.raised),
                "last_explosion": self.last_explosion, "quiet": self.quiet, "first_loss": self.first_loss}

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        for name, values in state.get("recent", {}).items():
            self.recent[name] = deque(values, maxlen=self.window)
        self.peaks.update(state.get("peaks", {}))
        self.collapsed.update(state.get("collapsed", {}))
        self.active, self.raised = state.get("active", ""), set(state.get("raised", ()))
        self.last_explosion, self.quiet = state.get("last_explosion", 0.0), state.get("quiet", 0)
        self.first_loss = state.get("first_loss")

    def median(self, name: str) -> float:
        """Median of the positive recent norms of ``name`` (0 when there is none)."""
        positive = [value for value in self.recent.get(name, ()) if value > 0.0]
        return statistics.median(positive) if positive else 0.0

    def observe(self, loss: float, norms: dict[str, float]) -> list[AlarmReport]:
        """The alarms of one step, from its loss and its per-parameter norms."""
        reports: list[AlarmReport] = []
        bad = [name for name, value in norms.items() if not math.isfinite(value)]
        if bad or not math.isfinite(loss):
            parameter, value = (bad[0], norms[bad[0]]) if bad else ("loss", loss)
            if "non_finite" not in self.raised:
                self._raise(reports, AlarmReport("non_finite", parameter, value, math.inf, 0.0,
                                                 f"{parameter} is {value}: the update was skipped"))
            self.quiet = 0
            return reports
        if self.first_loss is None:
            self.first_loss = loss
        loss_high = loss >= 0.5 * self.first_loss
        explosion = self._explosion(norms)
        saturation = self._saturation(norms, loss_high)
        for name, value in norms.items():  # the history, once per step: a deque is made only for a new name
            if name not in self.recent:
                self.recent[name] = deque(maxlen=self.window)
            self.recent[name].append(value)
            if value > self.peaks.get(name, 0.0):
                self.peaks[name] = value
        if explosion is not None and ("explosion" not in self.raised or explosion.value > 10 * self.last_explosion):
            # once raised, an explosion is announced again only if it grows another tenfold
            self._raise(reports, explosion)
            self.last_explosion = explosion.value
        if saturation is not None and "saturation" not in self.raised:
            self._raise(reports, saturation)
        if explosion is not None or saturation is not None:
            self.quiet = 0
        elif self.active:
            self.quiet += 1
            if self.quiet >= self.healthy_steps:
                reports.append(AlarmReport("healthy", "", 0.0, 0.0, 0.0, f"no trouble for {self.healthy_steps} steps"))
                self.active, self.quiet = "", 0
                self.raised.clear()
        return reports

    def _explosion(self, norms: dict[str, float]) -> AlarmReport | None:
        """The largest jump of this step above its running median, if it is an explosion."""
        worst = None
        for name, value in norms.items():
            if value < self.minimum_norm or value < self.peak_factor * self.peaks.get(name, 0.0):
                continue
            median = self.median(name)
            if median >= self.minimum_norm and value / median >= self.ratio_threshold and (worst is None or value / median > worst.ratio):
                ratio = value / median
                worst = AlarmReport("explosion", name, value, ratio, median,
                                    f"{name} gradient norm {value:.3g} is {ratio:.3g}x its recent median")
        return worst

    def _saturation(self, norms: dict[str, float], loss_high: bool) -> AlarmReport | None:
        """The first norm that has stayed collapsed long enough while the loss stays high."""
        found = None
        for name, value in norms.items():
            peak = self.peaks.get(name, 0.0)
            if loss_high and peak > 1.0 and value < self.collapse_ratio * peak:
                self.collapsed[name] = self.collapsed.get(name, 0) + 1
                if self.collapsed[name] >= self.collapse_steps and found is None:
                    found = AlarmReport("saturation", name, value, value / peak, peak,
                                        f"{name} gradient norm fell to {value:.3g} from a peak of {peak:.3g} "
                                        "while the loss stays high: the units are saturated")
            else:
                self.collapsed[name] = 0
        return found

    def _raise(self, reports: list[AlarmReport], report: AlarmReport) -> None:
        reports.append(report)
        self.active = report.kind
        self.raised.add(report.kind)
