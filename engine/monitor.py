"""Gradient norms of every step and the alarms raised on them.

The norms of all parameters come from one batched computation and one device->host transfer;
clipping reuses them instead of measuring the gradients again. ``GradientNorms`` is the runner's fast
path: each step ``capture`` keeps the step's squared gradients and returns the total norm at once (for
clipping and the finiteness check), and ``collect`` reads the per-parameter norms of all the steps kept
since, together. ``measure`` gives one step's norms for any dict of gradients.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

NORM_ORDERS = {"2": 2.0, "1": 1.0, "inf": math.inf}
_GRAD = operator.attrgetter("grad")


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


class _FlatGradients:
    """Every gradient of a CPU model in one flat buffer, and the textbook views as blocks of it.

    Each parameter's ``.grad`` becomes a view into the buffer (backward accumulates into it in place,
    ``zero_grad(set_to_none=False)`` zeroes it in place), and every textbook view is a contiguous
    block of one packed gradient (a gate's rows, maybe transposed). The squares of the whole buffer
    and one ``np.add.reduceat`` (which sums each block pairwise, so float32 loses no more than a
    norm kernel does) then give the sum of squares of every view at once, instead of one norm kernel
    per view; with a ring of kept steps' squares, one ``reduceat`` serves many steps.
    """

    RING_BYTES = 1 << 20  # the most memory the kept steps' squared gradients may take
    RING_ROWS = 64  # the most steps kept

    def __init__(self, flat: torch.Tensor):
        self.flat = flat
        self.values = flat.numpy()
        self.scratch = np.empty_like(self.values)
        self.starts = np.zeros(1, dtype=np.intp)  # the first element of every block, in order
        self.view_blocks: list[int] = []  # the block of each view
        self.pick = None  # a row of every block's value -> the views' values (None: the same)
        # the ring of kept steps' squared gradients (``keep``), whose sums are read together (``read_kept``)
        self.capacity = max(1, min(self.RING_ROWS, self.RING_BYTES // max(1, self.values.nbytes)))
        self.ring = torch.empty((self.capacity, flat.numel()), dtype=flat.dtype) if self.capacity > 1 else None
        self.rows = list(self.ring) if self.ring is not None else []
        self.kept = 0

    @classmethod
    def attach(cls, parameters: list[torch.nn.Parameter]) -> "_FlatGradients | None":
        """Move the parameters' gradients into one buffer; None where that cannot be done."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads or any(g.device.type != "cpu" or g.is_sparse or g.dtype not in (torch.float32, torch.float64)
                            or g.dtype != grads[0].dtype for g in grads):
            return None
        flat = torch.empty(sum(g.numel() for g in grads), dtype=grads[0].dtype)
        offset = 0
        with torch.no_grad():
            for parameter in parameters:
                if parameter.grad is None:
                    continue
                size = parameter.grad.numel()
                part = flat[offset:offset + size].view_as(parameter)
                part.copy_(parameter.grad)
                parameter.grad = part
                offset += size
        return cls(flat)

    def locate(self, views: list[torch.Tensor]) -> bool:
        """Find every view as a block of the buffer; False if one is not a contiguous block or two overlap."""
        base, size, total = self.flat.data_ptr(), self.flat.element_size(), self.flat.numel()
        blocks = []
        for view in views:
            dense = view.is_contiguous() or (view.dim() == 2 and view.t().is_contiguous())
            start = (view.data_ptr() - base) // size
            if not dense or view.numel() == 0 or start < 0 or start + view.numel() > total:
                return False
            blocks.append((start, start + view.numel()))
        ordered = sorted(blocks)
        if any(previous[1] > following[0] for previous, following in zip(ordered, ordered[1:])):
            return False
        bounds = sorted({0} | {edge for block in blocks for edge in block if edge < total})
        self.starts = np.array(bounds, dtype=np.intp)
        position = {edge: index for index, edge in enumerate(bounds)}
        self.view_blocks = [position[start] for start, _ in blocks]
        if self.view_blocks == list(range(len(bounds))):
            self.pick = None  # every block is a view, in order
        elif len(self.view_blocks) == 1:
            only = self.view_blocks[0]
            self.pick = lambda row: (row[only],)
        else:
            self.pick = operator.itemgetter(*self.view_blocks)
        return True

    def norms(self, norm_type: str) -> tuple[list[float], float]:
        values, scratch = self.values, self.scratch
        with np.errstate(over="ignore"):  # a square beyond float32's range is handled below
            np.multiply(values, values, out=scratch)
        sums = np.add.reduceat(scratch, self.starts).tolist()  # NumPy sums each block pairwise
        squared = sum(sums)
        if not math.isfinite(squared) and np.isfinite(values).all():  # squares beyond float32's range
            sums = np.add.reduceat(np.square(values, dtype=np.float64), self.starts).tolist()
            squared = sum(sums)
        sqrt = math.sqrt
        per_view = [sqrt(sums[block]) for block in self.view_blocks]
        if norm_type == "2":
            return per_view, sqrt(squared)
        np.abs(values, out=scratch)
        return per_view, float(scratch.sum() if norm_type == "1" else scratch.max())

    def keep(self, norm_type: str) -> float | None:
        """Keep this step's squared gradients in the ring and return the total norm in ``norm_type``;
        None when a square is beyond float32's range (``norms`` then gives the step's norms).
        The caller reads the ring before it is full. Squaring now, while the gradients are still in
        the CPU's cache, spares ``read_kept`` a pass over memory that has gone cold; and in the middle
        of a training step PyTorch's code is in the cache too, where NumPy's is not."""
        flat, row = self.flat, self.rows[self.kept]
        torch.mul(flat, flat, out=row)
        squared = row.sum().item()
        if not math.isfinite(squared) and np.isfinite(self.values).all():
            return None
        self.kept += 1
        if norm_type == "2":
            return math.sqrt(squared)
        return torch.linalg.vector_norm(flat, NORM_ORDERS[norm_type]).item()

    def read_kept(self) -> list:
        """Per-view L2 norms of every kept step, oldest first, from one reduceat over the ring (the
        square roots in float32, correctly rounded, like the sums they are taken of)."""
        sums = np.add.reduceat(self.ring.numpy()[: self.kept], self.starts, axis=1)  # [kept, blocks]
        self.kept = 0
        rows = np.sqrt(sums, out=sums).tolist()
        return rows if self.pick is None else list(map(self.pick, rows))  # [kept, views]

    def scale(self, factor: float) -> None:
        self.values *= factor


class GradientNorms:
    """Every step's norms for one model, as cheaply as one batched computation can give them.

    Building the textbook-named gradient views (slices of PyTorch's packed ``weight_ih_l0`` and
    friends) costs more than the norms themselves, so the views are built once and reused while
    every parameter keeps the same ``.grad`` tensor (``zero_grad(set_to_none=False)`` and backward
    write into it in place); a ``.grad`` that is replaced or set to None rebuilds them.

    On the CPU the gradients are gathered into one flat buffer (``_FlatGradients``): a captured step
    costs two PyTorch calls, the norms of all views of many steps one ``reduceat``, and clipping one
    multiplication. Elsewhere the norms are one ``torch._foreach_norm`` over the views and one host
    transfer, and clipping is one ``torch._foreach_mul_`` over the parameters' gradients.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.linked: list | None = None  # each parameter's .grad when the views were built
        self.all_names: tuple[str, ...] = ()
        self.names: list[str] = []  # the names that have a gradient
        self.views: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []  # the parameters' own gradients, for clipping
        self.flat: _FlatGradients | None = None
        # zero_grad found the views current, and backward cannot have replaced a .grad since (every
        # parameter had one, and backward accumulates into it in place): capture need not look again
        self.checked = False
        self.captured: list[list[float]] = []  # captured steps' norms (``all_names`` order), not yet collected

    def _current(self) -> bool:
        linked = self.linked
        return linked is not None and all(map(operator.is_, map(_GRAD, self.parameters), linked))

    def _link(self) -> None:
        self._read_ring()  # steps kept in the old layout are read in it
        flat = _FlatGradients.attach(self.parameters)
        gradients = self.model.textbook_gradients()
        self.all_names = tuple(gradients)
        self.names = [name for name, grad in gradients.items() if grad is not None]
        self.views = [gradients[name] for name in self.names]
        self.linked = [p.grad for p in self.parameters]
        self.grads = [g for g in self.linked if g is not None]
        self.flat = flat if flat is not None and self.views and flat.locate(self.views) else None

    def _aligned(self, values: list[float]) -> list[float]:
        """Norms of the views with a gradient, as norms of all names (0 for those without one)."""
        if len(self.names) == len(self.all_names):
            return values
        per_parameter = dict.fromkeys(self.all_names, 0.0)
        per_parameter.update(zip(self.names, values))
        return list(per_parameter.values())

    def _now(self, norm_type: str) -> tuple[list[float], float]:
        if not self.views:
            return [], 0.0
        if self.flat is not None:
            return self.flat.norms(norm_type)
        return _norms(self.views, self.grads, norm_type)

    def measure(self, norm_type: str = "2") -> StepNorms:
        """This step's per-view norms and total, now."""
        if not self._current():
            self._link()
        values, total = self._now(norm_type)
        return StepNorms(dict(zip(self.all_names, self._aligned(values))), total)

    # -- the training loop's path: capture every step, collect every few steps --

    def capture(self, norm_type: str = "2") -> float:
        """Keep this step's per-view norms for ``collect`` and return the total norm (``norm_type``) now.

        On the CPU the step's squared gradients go into a ring (one product, whose sum is the total)
        and the per-view norms of all kept steps come from one ``reduceat`` when they are collected:
        the NumPy work is paid once for many steps instead of once for each.
        """
        if not self.checked and not self._current():
            self._link()
        self.checked = False
        flat = self.flat
        if flat is None or flat.ring is None:
            values, total = self._now(norm_type)
            self.captured.append(self._aligned(values))
            return total
        if flat.kept == flat.capacity:
            self._read_ring()
        total = flat.keep(norm_type)
        if total is None:  # squares beyond float32's range: this step's norms in float64, now
            self._read_ring()
            values, total = flat.norms(norm_type)
            self.captured.append(self._aligned(values))
        return total

    def zero_grad(self) -> bool:
        """Zero every gradient with one operation, where they share the flat buffer; False where they
        do not (the caller then zeroes them its own way)."""
        flat = self.flat
        if flat is None or not self._current():
            return False
        flat.flat.zero_()
        self.checked = len(self.grads) == len(self.parameters)
        return True

    @property
    def ring_full(self) -> bool:
        """The ring holds as many steps as it can: collect them now."""
        flat = self.flat
        return flat is None or flat.ring is None or flat.kept == flat.capacity

    def collect(self) -> list[dict[str, float]]:
        """The per-view norms of every step captured since the last call, oldest first."""
        names, rows = self.collect_values()
        return [dict(zip(names, values)) for values in rows]

    def collect_values(self) -> tuple[tuple[str, ...], list[list[float]]]:
        """``collect`` without the dicts: the names, and each step's norms in their order."""
        self._read_ring()
        captured, self.captured = self.captured, []
        return self.all_names, captured

    def _read_ring(self) -> None:
        flat = self.flat
        if flat is not None and flat.kept:
            self.captured.extend(map(self._aligned, flat.read_kept()))

    def scale(self, factor: float) -> None:
        """Multiply every gradient by ``factor`` (what clipping does) in one batched operation."""
        if not self._current():
            self._link()
        if self.flat is not None:
            self.flat.scale(factor)
        elif self.grads:
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


@dataclass
class AlarmWatch:
    """Raises an alarm when a gradient norm jumps far above its recent running median (explosion),
    when the loss or a gradient is non-finite, or when norms collapse to ~0 after having been large
    while the loss stays high (saturation). Says ``healthy`` once a raised alarm has cleared.

    A step costs one pass over the norms: an explosion also needs the norm to be ``peak_factor``
    times the largest it has been, so the running median (of the last ``window`` steps' norms, kept
    as they came) is only taken for a parameter that has just passed that bound. The state is kept
    per position in ``names``, the parameters of the steps seen so far.
    """

    ratio_threshold: float = 100.0  # explosion: norm / running median of the last `window` norms
    window: int = 50
    peak_factor: float = 10.0  # ... and at least this many times the largest norm seen before
    minimum_norm: float = 1e-3  # ignore jumps among negligible norms
    collapse_ratio: float = 1e-4  # saturation: norm below this fraction of its peak ...
    collapse_steps: int = 5  # ... for this many steps in a row
    healthy_steps: int = 20  # steps without trouble before an alarm is declared over
    names: tuple = ()  # the parameters, in the order of the norms below
    recent: deque = field(default_factory=deque)  # the last `window` steps' norms (lists), oldest first
    peaks: list = field(default_factory=list)
    collapsed: list = field(default_factory=list)  # steps in a row each norm has been collapsed
    active: str = ""  # kind of the latest alarm in force, "" when healthy
    raised: set = field(default_factory=set)  # kinds raised since the run was last healthy
    last_value: float = 0.0
    quiet: int = 0
    first_loss: float | None = None

    def reset(self) -> None:
        """Forget everything (after a rewind the old history describes other weights)."""
        self.recent.clear()
        self.peaks = [0.0] * len(self.names)
        self.collapsed = [0] * len(self.names)
        self.active, self.quiet, self.last_value = "", 0, 0.0
        self.raised.clear()

    def _adopt(self, names: tuple) -> None:
        """Carry the state over, by name, to steps with other parameters (a new one starts afresh)."""
        position = {name: index for index, name in enumerate(self.names)}

        def by_name(values, default):
            return [values[position[name]] if name in position else default for name in names]

        self.peaks, self.collapsed = by_name(self.peaks, 0.0), by_name(self.collapsed, 0)
        self.recent = deque(by_name(values, 0.0) for values in self.recent)
        self.names = names

    def median(self, name: str) -> float:
        """Median of the positive norms of ``name`` over the recent window (0 when there is none)."""
        return self._median(self.names.index(name)) if name in self.names else 0.0

    def _median(self, index: int) -> float:
        positive = sorted(value for values in self.recent if (value := values[index]) > 0.0)
        if not positive:
            return 0.0
        middle = len(positive) // 2
        return positive[middle] if len(positive) % 2 else (positive[middle - 1] + positive[middle]) / 2

    def _raise(self, report: AlarmReport, reports: list[AlarmReport]) -> None:
        reports.append(report)
        self.active = report.kind
        self.raised.add(report.kind)

    def observe(self, loss: float, norms: dict[str, float]) -> list[AlarmReport]:
        """Look at one step's loss and norms (name -> norm)."""
        return self.observe_steps([loss], tuple(norms), [list(norms.values())]).get(0, [])

    def observe_steps(self, losses: list[float], names: tuple, rows: list) -> dict[int, list[AlarmReport]]:
        """``observe`` for a few steps in a row, each step's norms in the order of ``names`` (a row is
        kept, unchanged, for the running median); returns the reports of the steps that have some,
        by index."""
        if names is not self.names and names != self.names:
            self._adopt(names)
        found: dict[int, list[AlarmReport]] = {}
        isfinite = math.isfinite
        peaks, collapsed, recent, window = self.peaks, self.collapsed, self.recent, self.window
        jump_factor, minimum, collapse_ratio = self.peak_factor, self.minimum_norm, self.collapse_ratio
        for step, (loss, values) in enumerate(zip(losses, rows)):
            reports: list[AlarmReport] = []
            bad = () if isfinite(sum(values)) else [i for i, value in enumerate(values) if not isfinite(value)]
            if bad or not isfinite(loss):
                if "non_finite" not in self.raised:
                    parameter = names[bad[0]] if bad else "loss"
                    value = values[bad[0]] if bad else loss
                    self._raise(AlarmReport("non_finite", parameter, value, math.inf, 0.0,
                                            f"{parameter} is {value}: the update was skipped"), reports)
                if self._settle(reports, True):
                    found[step] = reports
                continue
            if self.first_loss is None:
                self.first_loss = loss
            loss_high = loss >= 0.5 * self.first_loss
            if not loss_high and any(collapsed):
                collapsed[:] = [0] * len(collapsed)
            explosion = saturated = None
            for index, value in enumerate(values):
                peak = peaks[index]
                if value >= jump_factor * peak and value >= minimum and recent:
                    median = self._median(index)
                    if median > 0.0 and value / median >= self.ratio_threshold:
                        if explosion is None or value / median > explosion[3]:
                            explosion = (names[index], value, median, value / median)
                if loss_high:
                    if peak > 1.0 and value < collapse_ratio * peak:
                        count = collapsed[index] = collapsed[index] + 1
                        if count >= self.collapse_steps and saturated is None:
                            saturated = (names[index], value, peak)
                    else:
                        collapsed[index] = 0
                if value > peak:
                    peaks[index] = value
            if explosion is not None:
                name, value, median, ratio = explosion
                # once raised, an explosion is announced again only if it grows another tenfold
                if "explosion" not in self.raised or value > 10 * self.last_value:
                    self._raise(AlarmReport("explosion", name, value, ratio, median,
                                            f"{name} gradient norm {value:.3g} is {ratio:.3g}x its recent median"),
                                reports)
                    self.last_value = value
            if saturated is not None and "saturation" not in self.raised:
                name, value, peak = saturated
                self._raise(AlarmReport("saturation", name, value, value / peak if peak else 0.0, peak,
                                        f"{name} gradient norm fell to {value:.3g} from a peak of {peak:.3g} "
                                        "while the loss stays high: the units are saturated"), reports)
            recent.append(values)
            if len(recent) > window:
                recent.popleft()
            trouble = explosion is not None or saturated is not None
            if (trouble or self.active) and self._settle(reports, trouble):  # otherwise nothing to say
                found[step] = reports
        return found

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
