"""Gradient norms of every step and the alarms raised on them.

The norms of all parameters come from one batched computation (``torch._foreach_norm``) and one
device->host transfer; clipping reuses them instead of measuring the gradients again.
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


def measure(gradients: dict[str, torch.Tensor | None], norm_type: str = "2") -> StepNorms:
    """All per-parameter L2 norms and the total norm (in ``norm_type``) with one host transfer."""
    names = [name for name, grad in gradients.items() if grad is not None]
    grads = [gradients[name] for name in names]
    if not grads:
        return StepNorms({name: 0.0 for name in gradients}, 0.0)
    l2 = torch.stack(torch._foreach_norm(grads, 2.0))  # [parameters]
    if norm_type == "2":
        values = l2.tolist()  # the one sync point of the step
        total = math.sqrt(sum(v * v for v in values))
    else:
        order = NORM_ORDERS[norm_type]
        other = torch.stack(torch._foreach_norm(grads, order))
        both = torch.cat([l2, other]).tolist()
        values, other_values = both[: len(grads)], both[len(grads):]
        total = sum(other_values) if norm_type == "1" else max(other_values)
    per_parameter = dict.fromkeys(gradients, 0.0)
    per_parameter.update(zip(names, values))
    return StepNorms(per_parameter, total)


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


@dataclass
class AlarmWatch:
    """Raises an alarm when a gradient norm jumps far above its recent running median (explosion),
    when the loss or a gradient is non-finite, or when norms collapse to ~0 after having been large
    while the loss stays high (saturation). Says ``healthy`` once a raised alarm has cleared."""

    ratio_threshold: float = 100.0  # explosion: norm / running median of the last `window` norms
    window: int = 50
    minimum_norm: float = 1e-3  # ignore jumps among negligible norms
    collapse_ratio: float = 1e-4  # saturation: norm below this fraction of its peak ...
    collapse_steps: int = 5  # ... for this many steps in a row
    healthy_steps: int = 20  # steps without trouble before an alarm is declared over
    history: dict = field(default_factory=dict)
    peaks: dict = field(default_factory=dict)
    collapsed: dict = field(default_factory=dict)
    active: str = ""  # kind of the alarm in force, "" when healthy
    last_value: float = 0.0
    quiet: int = 0
    first_loss: float | None = None

    def reset(self) -> None:
        """Forget everything (after a rewind the old history describes other weights)."""
        self.history.clear()
        self.peaks.clear()
        self.collapsed.clear()
        self.active, self.quiet, self.last_value = "", 0, 0.0

    def observe(self, loss: float, norms: dict[str, float]) -> list[AlarmReport]:
        reports: list[AlarmReport] = []
        trouble = False
        bad = [name for name, value in norms.items() if not math.isfinite(value)]
        if not math.isfinite(loss) or bad:
            trouble = True
            if self.active != "non_finite":
                parameter = bad[0] if bad else "loss"
                value = norms[parameter] if bad else loss
                reports.append(AlarmReport("non_finite", parameter, value, math.inf, 0.0,
                                           f"{parameter} is {value}: the update was skipped"))
                self.active = "non_finite"
            return self._settle(reports, trouble)
        if self.first_loss is None:
            self.first_loss = loss
        explosion = self._worst_jump(norms)
        if explosion is not None:
            trouble = True
            name, value, median, ratio = explosion
            escalated = self.active == "explosion" and value > 10 * self.last_value
            if self.active != "explosion" or escalated:
                reports.append(AlarmReport("explosion", name, value, ratio, median,
                                           f"{name} gradient norm {value:.3g} is {ratio:.3g}x its recent median"))
                self.active, self.last_value = "explosion", value
        saturated = self._collapsed(loss, norms)
        if saturated is not None:
            trouble = True
            name, value, peak = saturated
            if self.active != "saturation":
                reports.append(AlarmReport("saturation", name, value, value / peak if peak else 0.0, peak,
                                           f"{name} gradient norm fell to {value:.3g} from a peak of {peak:.3g} "
                                           "while the loss stays high: the units are saturated"))
                self.active = "saturation"
        for name, value in norms.items():
            self.history.setdefault(name, deque(maxlen=self.window)).append(value)
            self.peaks[name] = max(self.peaks.get(name, 0.0), value)
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
        return reports

    def _worst_jump(self, norms: dict[str, float]):
        worst = None
        for name, value in norms.items():
            recent = [v for v in self.history.get(name, ()) if v > 0.0]
            if not recent or value < self.minimum_norm:
                continue
            median = statistics.median(recent)
            ratio = value / median
            if ratio >= self.ratio_threshold and (worst is None or ratio > worst[3]):
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
