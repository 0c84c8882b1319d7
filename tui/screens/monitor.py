"""The monitor's one screen: its layout, and drawing a RunView into its widgets once per frame."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui.runs import RunSet, legend, run_colour
from tui.widgets.alarm_timeline import AlarmTimeline
from tui.widgets.charts import Charts
from tui.widgets.clip_advisor import ClipAdvisor
from tui.widgets.console import Console
from tui.widgets.flow_view import FlowView
from tui.widgets.gate_heatmaps import GateHeatmaps
from tui.widgets.run_header import RunHeader
from tui.widgets.saturation import SaturationLine
from tui.widgets.sparklines import Sparklines

CHART_SECONDS = 1.0  # plotext charts take ~0.1-0.2 s to draw: a slower rate keeps keys answered
MIN_SIZE = (60, 15)  # below this the essentials do not fit: one line asks for a larger terminal


class MonitorScreen(Screen):
    def __init__(self) -> None:
        super().__init__()
        self._last_chart = 0.0
        self.whole = False  # the whole run in buckets, or the live window
        self.charts_shown = False  # v: full charts instead of sparklines
        self.flow_shown = False  # t: the flow view instead of sparklines, charts and heatmaps
        # built here, not in compose, so the app may hold them before the screen is mounted
        self.run_header = RunHeader(id="header")
        self.timeline = AlarmTimeline(id="timeline")
        self.sparklines = Sparklines(id="sparklines")
        self.charts = Charts(id="charts")
        self.advisor = ClipAdvisor(id="advisor")
        self.heatmaps = GateHeatmaps(id="heatmaps")
        self.saturation = SaturationLine(id="saturation")
        self.flow = FlowView(id="flow")
        self.flow_scroll = VerticalScroll(self.flow, id="flow-scroll")
        self.heatmaps_scroll = VerticalScroll(self.saturation, self.heatmaps, id="heatmaps-scroll")
        self.flow_scroll.display = False
        self.console_panel = Console(placeholder="/ then a digit sequence, e.g. 6 7 0 0 1", id="console")
        self.too_small = Static(f"enlarge the terminal to at least {MIN_SIZE[0]}×{MIN_SIZE[1]}", id="too-small")
        self.charts.display = False

    def compose(self) -> ComposeResult:
        yield self.too_small
        yield self.run_header
        yield self.timeline
        yield self.sparklines
        yield self.charts
        yield self.advisor
        yield self.flow_scroll
        yield self.heatmaps_scroll
        yield self.console_panel
        yield Footer(compact=True)

    def fit(self, width: int, height: int) -> None:
        """Classes for the terminal's size: narrow panels under 100×30, one line under the minimum."""
        self.set_class(width < 100 or height < 30, "narrow")
        self.set_class(width < MIN_SIZE[0] or height < MIN_SIZE[1], "tiny")

    def toggle_charts(self) -> None:
        self.charts_shown = not self.charts_shown
        self.flow_shown = False
        self._show_body()

    def toggle_flow(self) -> None:
        self.flow_shown = not self.flow_shown
        self._show_body()

    def _show_body(self) -> None:
        flow = self.flow_shown
        self.flow_scroll.display = flow
        self.charts.display = self.charts_shown and not flow
        self.sparklines.display = not self.charts_shown and not flow
        self.heatmaps_scroll.display = not flow
        self._last_chart = 0.0

    def toggle_whole(self) -> None:
        self.whole = not self.whole
        self._last_chart = 0.0

    def draw(self, runs: RunSet, index: int | None, source: str, note: str, prompt: str = "",
             live: bool = False, clip_keys: bool = False) -> bool:
        """Draw the runs at the cursor ``index`` (None = newest): the front one in full, the others over
        it; True if charts still owe a frame. ``live``: an engine steers them (a fork's header says which);
        ``clip_keys``: the clip keys can act, so the header and the advisor name them."""
        if self.has_class("tiny"):
            return False
        state = runs.front
        position = runs.position(state, index)
        view = state.view(position, width=max(10, self.sparklines.bars_width()), whole=self.whole)
        entries = legend(runs, index, live) if runs.overlaid else []
        self.run_header.styles.height = 2 + len(entries)
        self.run_header.show(view, source, note, entries, clip_keys)
        self.timeline.show(view.alarms, str(view.config.get("cell", "srn")), prompt, self.has_class("narrow"))
        self.advisor.show(view, clip_keys)
        self.heatmaps.show(view.gates)
        self.saturation.show(view.saturation)
        if self.flow_shown:
            self.flow.show(view, self.has_class("narrow"))
            return False
        if not self.charts.display:
            overlays = runs.overlays(view.first_steps, view.step, index) if runs.overlaid else []
            colour = f"color({run_colour(runs.front_number)})" if runs.overlaid else "green"
            self.sparklines.show(view, overlays, colour)
            return False
        now = time.monotonic()
        if now - self._last_chart < CHART_SECONDS:
            return True
        self._last_chart = now
        self.charts.show(runs, None if position is None else view.index + 1, self.whole)
        return False
