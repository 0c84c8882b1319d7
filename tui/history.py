"""The whole run in a few hundred buckets, so a chart can show every step without drawing every step.

Each bucket keeps the largest and the smallest finite value of its steps and whether any was not
finite: compressed this way, a one-step spike (the explosion) can never be averaged or thinned away.
Buckets hold a power of two steps each; when they are all full, neighbours merge in pairs. New values
are taken from the run's per-step series in chunks, once per frame, at C speed (max and min of a list).
"""

from __future__ import annotations

import bisect
import math
from typing import Iterable, NamedTuple

CAPACITY = 512  # buckets kept per series (even: they merge in pairs)


class Bucket(NamedTuple):
    high: float  # largest finite value (-inf when none was finite)
    low: float  # smallest finite value (inf when none was finite)
    bad: bool  # a value was NaN or infinite
    first: int  # position of its first step in the run
    count: int  # steps it holds


def _summary(values: list[float]) -> tuple[float, float, bool]:
    if math.isfinite(sum(values)):
        return max(values), min(values), False
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return -math.inf, math.inf, True
    return max(finite), min(finite), True


class MinMaxHistory:
    """One series, compressed. ``extend`` takes the values of the next positions in order."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.size = 1  # steps per full bucket
        self.highs: list[float] = []
        self.lows: list[float] = []
        self.bad: list[bool] = []
        self.count = 0  # positions taken in so far
        self._open: list[float] = []  # values of the bucket not yet full

    def extend(self, values: Iterable[float]) -> None:
        pending = self._open
        for value in values:
            pending.append(value)
            self.count += 1
            if len(pending) == self.size:
                self._close(pending)
                pending = self._open = []

    def _close(self, values: list[float]) -> None:
        high, low, bad = _summary(values)
        self.highs.append(high)
        self.lows.append(low)
        self.bad.append(bad)
        if len(self.highs) == self.capacity:  # all full: merge neighbours, twice the steps each
            highs, lows, bad = self.highs, self.lows, self.bad
            self.highs = [max(highs[i], highs[i + 1]) for i in range(0, len(highs), 2)]
            self.lows = [min(lows[i], lows[i + 1]) for i in range(0, len(lows), 2)]
            self.bad = [bad[i] or bad[i + 1] for i in range(0, len(bad), 2)]
            self.size *= 2

    def columns(self, width: int, end: int | None = None, values_at=None) -> list[Bucket]:
        """The run's first ``end`` positions (None = all) in at most ``width`` columns of whole buckets.

        A cursor inside a closed bucket (scrubbing a replay) needs that bucket's steps before it:
        ``values_at(start, stop)`` gives them (None when they are no longer kept)."""
        end = self.count if end is None else max(0, min(end, self.count))
        full = min(len(self.highs), end // self.size)
        buckets = [(self.highs[i], self.lows[i], self.bad[i], i * self.size, self.size) for i in range(full)]
        rest = end - full * self.size
        if rest > 0:  # the part of a bucket before ``end`` (a replay's cursor, or the open bucket)
            start = full * self.size
            values = self._open[:rest] if full == len(self.highs) else None
            if values is None and values_at is not None:
                values = values_at(start, end)
            if values:
                buckets.append((*_summary(values), start, rest))
            else:  # those steps are no longer kept: the bucket's summary (it covers later steps too)
                buckets.append((self.highs[full], self.lows[full], self.bad[full], start, rest))
        if not buckets or width <= 0:
            return []
        if len(buckets) <= width:
            return [Bucket(*bucket) for bucket in buckets]
        columns = []
        for column in range(width):
            group = buckets[column * len(buckets) // width: (column + 1) * len(buckets) // width]
            columns.append(Bucket(max(b[0] for b in group), min(b[1] for b in group), any(b[2] for b in group),
                                  group[0][3], sum(b[4] for b in group)))
        return columns


def decades(low: float, high: float, most: int = 6) -> list[int]:
    """Powers of ten to label a log axis from ``low`` to ``high`` (positive), at most ``most`` of them."""
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        return []
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    stride = max(1, math.ceil((last - first + 1) / most))
    return list(range(first, last + 1, stride))


class Thinned(list):
    """A list of a long run's snapshots in at most ``bound`` entries spread evenly over the run: past
    the bound every other entry is dropped, and from then on only every other new one is taken."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound, self.every, self.offered = bound, 1, 0

    def offer(self, item) -> None:
        if self.offered % self.every == 0:
            self.append(item)
            if len(self) > self.bound:
                del self[1::2]
                self.every *= 2
        self.offered += 1


def scores_per_column(evaluations: list[tuple[int, float]], firsts: list[int], last: int) -> list[float | None]:
    """For each column of a whole run (its first step in ``firsts``, the last column ending at step
    ``last``) the score of the last evaluation by its end: the dev row lined up with the rows of steps
    above it (None before the first evaluation; nothing at all when there is none)."""
    if not evaluations:
        return []
    steps = [step for step, _ in evaluations]
    ends = firsts[1:] + [last + 1]
    return [evaluations[k - 1][1] if (k := bisect.bisect_left(steps, end)) else None for end in ends]
