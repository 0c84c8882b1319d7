"""The clipping advisor, after Pascanu, Mikolov & Bengio (2013, §3.2): a clipping threshold from half to
ten times the average gradient norm over a sufficiently large number of updates still converges.

It watches Step and Alarm events (no textual, no torch): the average of the pre-clip total norm over
the last ``WINDOW`` healthy steps (finite, not skipped, not between an alarm and the all-clear, not in
the run-up to an explosion), and the share of steps that clipping scaled down. Every step records the
advice as it stood then, so a replay scrubbed to any step shows the advice of that step.

An explosion is often announced a few steps late: the norms climb for several steps before one jumps
far enough above its median for the alarm. Those steps were already beyond the band of the steps before
them (more than ``BAND[1]`` times their average), so they belong to the explosion, not to the stable
phase; counted as healthy, they would pull the average up by the explosion's own growth.
"""

from __future__ import annotations

import collections
import itertools
import math
from typing import NamedTuple

from engine.events import Alarm

WINDOW = 50  # healthy steps averaged
SHARE_WINDOW = 100  # steps over which the share clipped is counted
BAND = (0.5, 10.0)  # Pascanu et al.: thresholds this many times the average still converge
# the band assumes the averaged steps were a stable phase; a loss that rose this much over them says not
UNSTABLE_RISE = 2.0
# Pascanu's "sufficiently large number of updates": fewer healthy steps than this are no stable phase
MIN_STABLE = WINDOW // 2
TROUBLE = ("explosion", "non_finite", "saturation")
GROWTH = ("explosion", "non_finite")  # troubles whose run-up is dropped from the healthy steps


class Advice(NamedTuple):
    average: float  # average pre-clip total norm over the healthy steps (nan before any)
    healthy: int  # how many healthy steps it averages
    loss_rise: float  # the mean loss of their later half over the earlier half's (> 1: it rose)
    clipped_share: float  # share of the last SHARE_WINDOW steps that clipping scaled down
    steps: int  # how many steps that share is of

    @property
    def band(self) -> tuple[float, float]:
        return self.average * BAND[0], self.average * BAND[1]

    @property
    def enough(self) -> bool:
        """Whether it averages enough healthy steps to speak of a phase at all."""
        return self.healthy >= MIN_STABLE

    @property
    def stable(self) -> bool:
        """Whether the averaged steps were a stable phase: enough of them, and the loss held over them
        (else the band may be far off)."""
        return self.enough and not self.loss_rise > UNSTABLE_RISE

    @property
    def suggestion(self) -> float | None:
        """The average itself, to two significant figures (None before any healthy step)."""
        if not (self.healthy and math.isfinite(self.average) and self.average > 0):
            return None
        return float(f"{self.average:.2g}")


class ClipAdvisor:
    def __init__(self, history: int) -> None:
        # (step, total, loss) of the last healthy steps: the average takes the last WINDOW; the ones before
        # them measure the run-up of an explosion
        self._recent: collections.deque[tuple[int, float, float]] = collections.deque(maxlen=2 * WINDOW)
        self._troubled = False
        self._clipped = 0  # steps clipped so far, all run
        # per step of the run, aligned with the state's other series
        self.averages: collections.deque[float] = collections.deque(maxlen=history)
        self.counts: collections.deque[int] = collections.deque(maxlen=history)
        self.rises: collections.deque[float] = collections.deque(maxlen=history)
        self.clipped_so_far: collections.deque[int] = collections.deque(maxlen=history)

    def observe_step(self, step: int, total: float, loss: float, clip_factor: float, skipped: bool) -> None:
        if not self._troubled and not skipped and math.isfinite(total):
            self._recent.append((step, total, loss))
        if clip_factor < 1.0:
            self._clipped += 1
        self._record()

    def observe_alarm(self, alarm: Alarm) -> None:
        if alarm.kind in TROUBLE:
            self._troubled = True
            # the alarm's own step (and any after it, already taken) was not healthy
            while self._recent and self._recent[-1][0] >= alarm.step:
                self._recent.pop()
            if alarm.kind in GROWTH:
                self._drop_run_up()
            if self.averages:
                self.averages.pop(), self.counts.pop(), self.rises.pop(), self.clipped_so_far.pop()
                self._record()
        elif alarm.kind == "healthy":
            self._troubled = False

    def _drop_run_up(self) -> None:
        """Forget the last steps while each was beyond the band of the WINDOW steps before it."""
        while len(self._recent) > 1:
            before = list(itertools.islice(reversed(self._recent), 1, WINDOW + 1))
            if self._recent[-1][1] <= BAND[1] * sum(total for _, total, _ in before) / len(before):
                return
            self._recent.pop()

    def _record(self) -> None:
        recent = list(itertools.islice(reversed(self._recent), WINDOW))[::-1]  # the last WINDOW, in order
        count = len(recent)
        self.averages.append(sum(total for _, total, _ in recent) / count if count else math.nan)
        self.counts.append(count)
        # the mean of each half: one batch's loss alone can be several times the next one's
        losses = [loss for _, _, loss in recent] or [1.0]
        half = max(1, len(losses) // 2)
        first, last = sum(losses[:half]) / half, sum(losses[-half:]) / half
        self.rises.append(last / first if first > 0 and math.isfinite(last) else math.nan)
        self.clipped_so_far.append(self._clipped)

    def at(self, index: int) -> Advice | None:
        """The advice as it stood at series position ``index``."""
        if index < 0 or index >= len(self.averages):
            return None
        earlier = index - SHARE_WINDOW
        before = self.clipped_so_far[earlier] if earlier >= 0 else 0
        steps = min(index + 1, SHARE_WINDOW)
        share = (self.clipped_so_far[index] - before) / steps
        return Advice(self.averages[index], self.counts[index], self.rises[index], share, steps)
