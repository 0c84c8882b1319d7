"""What the monitor keeps of the instruments' events (Flow, Saturation). Pure Python, bounded.

Flows arrive about ten times a second: the last HISTORY_FLOWS of them are kept for the heatmap, and
the σ_max readings of the whole run in a series that halves its resolution whenever it fills, so the
gauge's series covers the run in bounded memory. Each item is kept with the series position of the
step it belongs to, so a replay's cursor shows only what had been measured by then.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
from typing import NamedTuple

from engine.events import Flow, Saturation

HISTORY_FLOWS = 2_000  # Flow events kept whole (a heatmap column each)
HISTORY_GAUGE = 1_000  # σ_max readings over the run (thinned to every other one when full)
HISTORY_SATURATION = 2_000


class GaugeReading(NamedTuple):
    position: int
    step: int
    sigma_max: dict  # U name -> σ_max
    jacobian_sigma_max: float


class InstrumentHistory:
    def __init__(self) -> None:
        self.flows: collections.deque[tuple[int, Flow]] = collections.deque(maxlen=HISTORY_FLOWS)
        self.gauge: list[GaugeReading] = []
        self.gauge_stride = 1  # one reading kept in this many
        self._gauge_seen = 0
        self.saturations: collections.deque[tuple[int, Saturation]] = collections.deque(maxlen=HISTORY_SATURATION)

    def ingest(self, event: Flow | Saturation, position: int) -> None:
        if isinstance(event, Saturation):
            self.saturations.append((position, event))
            return
        self.flows.append((position, event))
        if self._gauge_seen % self.gauge_stride == 0:
            self.gauge.append(GaugeReading(position, event.step, event.sigma_max, event.jacobian_sigma_max))
            if len(self.gauge) >= HISTORY_GAUGE:
                self.gauge = self.gauge[::2]
                self.gauge_stride *= 2
        self._gauge_seen += 1

    def flows_until(self, index: int | None, count: int) -> list[Flow]:
        """The last ``count`` flows measured by series position ``index`` (None: all)."""
        items = self.flows
        end = len(items) if index is None else bisect.bisect_right(items, index, key=lambda item: item[0])
        return [flow for _, flow in itertools.islice(items, max(0, end - count), end)]

    def gauge_until(self, index: int | None) -> list[GaugeReading]:
        if index is None:
            return list(self.gauge)
        return self.gauge[:bisect.bisect_right(self.gauge, index, key=lambda reading: reading.position)]

    def saturation_at(self, index: int | None) -> Saturation | None:
        items = self.saturations
        end = len(items) if index is None else bisect.bisect_right(items, index, key=lambda item: item[0])
        return items[end - 1][1] if end else None


def reach(flow: Flow, first: int = 1) -> float:
    """How much of the gradient at the last step reaches the first ``first`` positions: the smallest
    of ‖∂L/∂h_t‖ / ‖∂L/∂h_T‖ over them (the digit task's label is the sum of the first two digits)."""
    norms = flow.grad_h_norms
    if not norms or not all(isinstance(value, (int, float)) for value in norms):
        return math.nan
    last = norms[-1]
    if not last > 0:
        return math.nan
    return min(norms[:first]) / last
