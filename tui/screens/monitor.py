"""The monitor's one screen: its layout, and drawing a RunView into its widgets once per frame."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from tui.state import RunState
from tui.widgets.alarm_banner import AlarmBanner
from tui.widgets.charts import Charts
from tui.widgets.console import Console
from tui.widgets.gate_heatmaps import GateHeatmaps
from tui.widgets.run_header import RunHeader
from tui.widgets.sparklines import Sparklines

CHART_SECONDS = 1.0  # plotext charts take ~0.1-0.2 s to draw: a slower rate keeps keys answered


class MonitorScreen(Screen):
    def __init__(self) -> None:
        super().__init__()
        self._last_chart = 0.0
        # built here, not in compose, so the app may hold them before the screen is mounted
        self.run_header = RunHeader(id="header")
        self.banner = AlarmBanner(id="banner")
        self.sparklines = Sparklines(id="sparklines")
        self.charts = Charts(id="charts")
        self.heatmaps = GateHeatmaps(id="heatmaps")
        self.console_panel = Console(placeholder="/ then a digit sequence, e.g. 6 7 0 0 1", id="console")
        self.charts.display = False
        self.banner.display = False

    def compose(self) -> ComposeResult:
        yield self.run_header
        yield self.banner
        # no scrolling containers: each panel fits what it draws to the room it gets (a scrollbar
        # in a panel this small read as stray "▄▄" marks)
        yield self.sparklines
        yield self.charts
        yield self.heatmaps
        yield self.console_panel
        yield Footer(compact=True)

    def toggle_charts(self) -> None:
        self.charts.display = not self.charts.display
        self.sparklines.display = not self.charts.display
        self._last_chart = 0.0

    def draw(self, state: RunState, index: int | None, source: str, note: str) -> bool:
        """Draw the run at series position ``index`` (None = newest); True if charts still owe a frame."""
        view = state.view(index, width=max(10, self.sparklines.size.width))
        self.run_header.show(view, source, note)
        self.banner.show(view.alarm)
        self.heatmaps.show(view.gates)
        if state.task == "lm":
            self.console_panel.set_placeholder("/ then a prefix to continue, e.g. time traveller")
        if not self.charts.display:
            self.sparklines.show(view)
            return False
        now = time.monotonic()
        if now - self._last_chart < CHART_SECONDS:
            return True
        self._last_chart = now
        self.charts.show(state, None if index is None else view.index + 1)
        return False
