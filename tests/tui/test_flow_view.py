"""The flow view (t) and the saturation line under Textual's Pilot, fed a fake live source."""

import asyncio
import math

import pytest

from engine.events import Flow, Saturation
from tui.app import build_app
from tui.synthetic import synthetic_events

from monitor_fakes import FakeLiveSource, until as _until


def flow(step: int, vanishing: float = 0.1, sigma: float = 0.93) -> Flow:
    """An SRN's flow over L=20 steps: each step back keeps ``vanishing`` of the gradient."""
    norms = [vanishing ** (19 - t) for t in range(20)]
    return Flow(step=step, grad_h_norms=norms, ratio=norms[0] / norms[-1], sigma_max={"U": sigma},
                inverse_gamma={"U": 1.0}, jacobian_sigma_max=0.5)


def _flow_text(app) -> str:
    return str(app.monitor.flow.render())


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_t_shows_the_flow_heatmap_the_ratio_and_the_gauge_against_its_bound(size):
    async def run():
        source = FakeLiveSource(list(synthetic_events(4, cell="srn")) + [flow(step) for step in (1, 2, 3)])
        app = build_app(source)
        async with app.run_test(size=size) as pilot:
            await _until(pilot, lambda: app.state.instruments.flows)
            assert not app.monitor.flow_scroll.display
            await pilot.press("t")
            await _until(pilot, lambda: "step 3" in _flow_text(app))
            text = _flow_text(app)
            assert "1.00e-19" in text and "never reaches" in text  # h_1/h_T, the first digits lost
            assert "t1,2 " in text and "t19,20 " in text and "t21" not in text  # 20 time steps, two a line
            gauge = "σ_max(U)    0.93 < 1/γ 1" if size[0] >= 100 else "σ_max U 0.93/1"
            assert gauge in text
            assert app.monitor.flow_scroll.display and not app.monitor.sparklines.display
            assert not app.monitor.heatmaps_scroll.display
            source.push([flow(4, vanishing=1.0, sigma=1.7)])  # the gradient now reaches every step
            await _until(pilot, lambda: "step 4" in _flow_text(app))
            text = _flow_text(app)
            assert "reaches" in text and "never" not in text and "1.7" in text
            assert [reading.sigma_max["U"] for reading in app.state.instruments.gauge] == [0.93, 0.93, 0.93, 1.7]
            await pilot.press("t")
            await _until(pilot, lambda: app.monitor.sparklines.display)
            assert app.monitor.heatmaps_scroll.display

    asyncio.run(run())


def test_gates_view_shows_the_saturation_of_the_last_evaluation():
    async def run():
        reading = Saturation(step=4, cell="lstm", low={"forget_gate": 0.25}, high={"forget_gate": 0.625},
                             hidden_saturated=0.75)
        source = FakeLiveSource(list(synthetic_events(4, cell="lstm")) + [reading])
        app = build_app(source)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: "step 4" in str(app.monitor.saturation.render()))
            text = str(app.monitor.saturation.render())
            assert "forget gate <0.1 25%" in text and ">0.9 62%" in text and "|h|>0.99 75%" in text

    asyncio.run(run())


def test_at_80_columns_the_saturation_line_breaks_between_gates_and_the_quiet_timeline_keeps_whole_words():
    from tui.widgets.alarm_timeline import story_text
    from tui.widgets.saturation import saturation_text

    reading = Saturation(step=4700, cell="lstm", low={"input_gate": 0.01, "forget_gate": 0.0, "output_gate": 0.0},
                         high={"input_gate": 0.49, "forget_gate": 0.44, "output_gate": 0.64}, hidden_saturated=0.07)
    assert "input gate <0.1 1% · >0.9 49%   forget gate" in saturation_text(reading, 160).plain
    lines = saturation_text(reading, 78).plain.splitlines()
    assert len(lines) == 2 and all(len(line) <= 78 for line in lines)
    for gate in ("input <0.1 1% · >0.9 49%", "forget <0.1 0% · >0.9 44%", "output <0.1 0% · >0.9 64%"):
        assert any(gate in line for line in lines)
    assert story_text([], "lstm", 78, 1).plain == "no alarms: explosions, NaN and vanished gradients are told here"
    assert "(a norm 100× its recent median)" in story_text([], "lstm", 120, 1).plain


def test_a_replay_cursor_shows_the_flows_measured_by_then():
    from tui.state import RunState

    state = RunState()
    state.ingest(list(synthetic_events(6, cell="srn")) + [flow(6)])
    positions = [position for position, _ in state.instruments.flows]
    view_before = state.view(positions[0] - 1)
    view_at = state.view(positions[0])
    assert view_before.flows == [] and [f.step for f in view_at.flows] == [6]
    assert math.isclose(view_at.flows[0].ratio, 1e-19)


def test_a_long_replay_shows_the_gates_of_a_step_at_or_before_the_cursor():
    from tui.state import HISTORY_GATES, RunState

    state = RunState()
    state.ingest(synthetic_events(2000))  # gates every 5 steps: 400 snapshots, more than are kept
    assert len(state.gates) <= HISTORY_GATES
    for step in (10, 500, 1003, 2000):
        shown = state.view(step - 1).gates.step  # series position step - 1 is that step
        assert step - 40 <= shown <= step  # the nearest kept snapshot before it, never one from later


def test_a_long_sequence_is_drawn_in_the_lines_there_are_first_and_last_step_included():
    from tui.widgets.flow_view import time_steps

    assert time_steps(20, 10) == list(range(20))  # it fits: every time step
    drawn = time_steps(35, 9)  # a language model's window at 80x24
    assert len(drawn) == 18 and drawn[0] == 0 and drawn[-1] == 34 and drawn == sorted(set(drawn))
    from tui.widgets.flow_view import heatmap

    labels = [line.plain.split()[0] for line in heatmap([[1.0] * 35], drawn)]  # each line names its two
    assert labels[0] == f"t1,{drawn[1] + 1}" and labels[-1] == f"t{drawn[-2] + 1},35"


def test_the_colour_scale_says_its_ends_apart_when_they_share_a_decade():
    from tui.widgets.flow_view import legend

    assert legend(-2.3, -2.05, 80).plain.split()[:3] == ["0.005", "████████████", "0.0089"]
    assert legend(-17.0, 2.0, 80).plain.split()[:3] == ["1e-17", "████████████", "1e2"]
