"""The headline screen under Pilot: every size, the run's story, whole-run history, marks, the pause at
the explosion and the clipping advisor (synthetic runs and a fake live source; no torch)."""

import asyncio
import re
import dataclasses
import math

import pytest

from engine.commands import Pause, Resume, Rewind, SetClip
from engine.events import Alarm, Prediction, RunStarted, Settings, Status, Step
from tui.app import build_app
from tui.format import short
from tui.sources import LogFileSource, LogFilesSource
from tui.synthetic import synthetic_events, write_log

from monitor_fakes import FakeLiveSource, until as _until


def _lines(app) -> str:
    """What the terminal shows, as text."""
    width, height = app.size
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips[:height])


def _replay(tmp_path, events, name: str = "run.jsonl"):
    """The monitor replaying a log of ``events`` written to ``tmp_path / name``."""
    path = str(tmp_path / name)
    write_log(path, events)
    return build_app(LogFileSource(path))


def _drawn_step(app) -> int | None:
    """The step on the terminal: the sparklines' and the header's (None while they differ)."""
    step = app.monitor.sparklines._view.step
    return step if f" step {step}/" in _lines(app) else None


def _with_clip(events, from_step, max_norm, norm_type="2"):
    """The run with clipping switched on before step ``from_step``: a Settings event, then clipped steps."""
    changed = []
    for event in events:
        if isinstance(event, Step) and event.step == from_step:
            changed.append(Settings(step=from_step - 1, clip_on=True, clip_max_norm=max_norm, clip_norm_type=norm_type,
                                    lr=0.2, cause="command"))
        if isinstance(event, Step) and event.step >= from_step:
            event = dataclasses.replace(event, clip_factor=min(1.0, max_norm / event.total_norm))
        changed.append(event)
    return changed


def _pausing(events):
    """A run started from the TUI, which pauses at its first explosion."""
    return [dataclasses.replace(event, config={**event.config, "pause_on_alarm": True})
            if isinstance(event, RunStarted) else event for event in events]


@pytest.mark.parametrize("cell, rows", [("srn", ("‖∇W‖", "‖∇U‖", "‖∇b‖")),
                                        ("lstm", ("‖∇U_i‖", "‖∇U_f‖", "‖∇U_o‖", "‖∇U_c‖"))])
@pytest.mark.parametrize("size", [(80, 24), (80, 23), (120, 40)])
def test_the_essentials_fit_every_common_size(size, cell, rows, tmp_path):
    async def run():
        app = _replay(tmp_path, synthetic_events(120, cell=cell))
        async with app.run_test(size=size) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: "step 120/120" in _lines(app))
            screen = _lines(app)
            lines = screen.splitlines()
            assert lines[0].startswith(f" {cell.upper()}") and "step 120/120" in lines[1]  # the header
            assert "step 3: ‖∇" in screen  # the timeline
            shown = rows if size[1] >= 24 else rows[:3]  # one line short of 24: one U row folds away
            for row in (*shown, "total norm"):  # the recurrent matrices at least, whatever else folds
                assert any(line.lstrip().startswith(row) for line in lines), row
            assert lines[-1].startswith("? help q quit")  # the footer keeps help and quit
            for line in lines:  # the norms that fold into one row are named whole
                if line.lstrip().startswith("+") and " more " in line:
                    folded = line.split(" more ", 1)[1].rsplit(" max ", 1)[0].split()
                    assert folded and all(name in parameters or name == "…" for name in folded), line

    parameters = next(synthetic_events(1, cell=cell)).parameters
    asyncio.run(run())


def test_in_the_console_the_footer_says_how_to_leave_it():
    async def run():
        source = FakeLiveSource(list(synthetic_events(20, finish=False)))  # still training: + and - steer
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: _lines(app).splitlines()[-1].startswith("? help q quit"))
            assert "+ - speed" in _lines(app).splitlines()[-1]
            await pilot.press("slash")  # q and ? are characters of the input from here, + and - too
            await _until(pilot, lambda: _lines(app).splitlines()[-1].strip() == "Esc leave console")
            source.push([event for event in synthetic_events(21, finish=False) if event.step == 21])
            await _until(pilot, lambda: " step 21/" in _lines(app))  # drawn again while the console has the keys
            assert "clip OFF (c: max_norm=20)" in _lines(app).splitlines()[0]
            await pilot.press("plus")
            assert app.focused.value == "+" and not source.sent  # typed, not a speed request
            await pilot.press("escape")
            await _until(pilot, lambda: _lines(app).splitlines()[-1].startswith("? help q quit"))

    asyncio.run(run())


def test_at_120_columns_a_live_runs_footer_names_every_key_that_acts():
    async def run():
        source = FakeLiveSource(list(synthetic_events(20, finish=False)))
        app = build_app(source)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: _lines(app).splitlines()[-1].startswith("? help q quit"))
            footer = _lines(app).splitlines()[-1].rstrip()
            assert footer == ("? help q quit c [ ] clip p pause n step r rewind + - speed g gates t flow "
                              "/ console a advise w whole v charts f fork"), footer

    asyncio.run(run())


def test_at_80_columns_a_replays_footer_ends_at_a_whole_key(tmp_path):
    async def run():
        app = _replay(tmp_path, synthetic_events(30))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await _until(pilot, lambda: _lines(app).splitlines()[-1].startswith("? help q quit"))
            footer = _lines(app).splitlines()[-1].rstrip()
            assert footer.endswith("+ - speed t flow w whole v charts ← → move"), footer

    asyncio.run(run())


def test_below_the_minimum_one_line_asks_for_a_larger_terminal():
    async def run():
        app = build_app(FakeLiveSource(list(synthetic_events(20))))
        async with app.run_test(size=(40, 12)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 19 and "enlarge" in _lines(app))
            lines = [line.rstrip() for line in _lines(app).splitlines()]
            assert lines[0].strip().startswith("enlarge the terminal to at least 60×15")
            assert all(not line for line in lines[1:])  # nothing else: no stray glyphs
            await pilot.resize_terminal(80, 24)
            await _until(pilot, lambda: "‖∇W‖" in _lines(app))
            assert "enlarge" not in _lines(app)

    asyncio.run(run())


@pytest.mark.parametrize("cell, parameter", [("lstm", "W_i"), ("gru", "W_z")])
def test_at_80x24_the_parameter_an_alarm_names_keeps_its_row(cell, parameter, tmp_path):
    path = str(tmp_path / "run.jsonl")
    write_log(path, [dataclasses.replace(event, parameter=parameter) if isinstance(event, Alarm) else event
                     for event in synthetic_events(20, cell=cell)])

    async def run():
        app = build_app(LogFileSource(path))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: "step 20/20" in _lines(app))
            lines = _lines(app).splitlines()
            assert f"step 3: ‖∇{parameter}‖" in _lines(app)  # the timeline names it ...
            assert any(line.lstrip().startswith(f"‖∇{parameter}‖") for line in lines)  # ... and its row is there
            assert any(line.lstrip().startswith("+") and " more " in line for line in lines)  # others folded

    asyncio.run(run())


def test_help_scrolls_at_80x24():
    async def run():
        app = build_app(FakeLiveSource(list(synthetic_events(5))))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 4)
            await pilot.press("question_mark")
            await _until(pilot, lambda: "rnnlab-tui keys" in _lines(app))
            help_panel = app.screen.query_one("#help")
            assert help_panel.max_scroll_y > 0
            assert "Pascanu" not in _lines(app)  # below the fold at first
            await pilot.press("pagedown")  # as its title says, the keys scroll it
            await _until(pilot, lambda: help_panel.scroll_y > 0)
            await pilot.press("end")
            await _until(pilot, lambda: "d2l. Names and heatmaps" in _lines(app).replace("\n", " ")
                         or "Names and heatmaps are the same" in _lines(app))

    asyncio.run(run())


def test_the_dev_row_is_lined_up_with_the_steps_above_it(tmp_path):
    """Each column of the dev row holds the last evaluation by its step, as the loss above it holds
    that step's loss: a dip in accuracy sits under the steps it followed."""
    async def run():
        app = _replay(tmp_path, synthetic_events(200, cell="srn", steps_per_epoch=50), "dev.jsonl")
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("home", *["right"] * 59)  # step 60: one evaluation so far, at step 50
            await _until(pilot, lambda: _drawn_step(app) == 60)
            view = app.monitor.sparklines._view
            assert len(view.scores) == len(view.first_steps) == 60
            first = app.runs.front.evals[0][1]
            assert first.step == 50
            assert view.scores[:49] == [None] * 49 and view.scores[49:] == [first.accuracy] * 11
            row = next(line for line in _lines(app).splitlines() if line.lstrip().startswith("dev acc"))
            bars = row[1 + app.monitor.sparklines._widths()[0] + 1:][: app.monitor.sparklines.bars_width()]
            pad = app.monitor.sparklines.bars_width() - 60
            assert bars[: pad + 49].strip() == "" and bars[pad + 49: pad + 60].strip() != ""

    asyncio.run(run())


def test_whole_run_keeps_the_spike_the_window_has_lost(tmp_path):
    async def run():
        app = _replay(tmp_path, synthetic_events(2000, cell="srn", steps_per_epoch=50), "long.jsonl")
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: _drawn_step(app) == 2000)
            window = app.monitor.sparklines._view
            assert max(window.grad_norms["W"]) < 1  # the last steps: collapsed norms only
            await pilot.press("w")
            await _until(pilot, lambda: app.monitor.sparklines._view.whole)
            whole = app.monitor.sparklines._view
            assert max(whole.grad_norms["W"]) > 1e5  # steps 3-5 survive the compression
            assert len(whole.loss) <= app.monitor.sparklines.bars_width()
            assert whole.first_steps[0] == 1
            # the dev row spans the run too, a column each: from the first evaluations' 0.1 to the last
            assert len(whole.scores) == len(whole.first_steps)
            scored = [score for score in whole.scores if score is not None]  # none before the first, at step 50
            assert scored[0] < 0.2 and scored[-1] == app.runs.front.evals[-1][1].accuracy
            screen = _lines(app)
            assert re.search(r"‖∇W‖ +█▁+ +1e-[67]\.\.1e[67] ", screen)  # the spike, then the decades it spans
            assert "whole run 1–2000" in screen
            last_loss = app.runs.front.loss[-1]  # beside the bars the step's own loss, not its bucket's largest
            assert whole.loss[-1] > last_loss
            assert re.search(rf"loss +[▁-█ ]+ {re.escape(short(last_loss))}\s", screen)
            await pilot.press("w")
            await _until(pilot, lambda: not app.monitor.sparklines._view.whole)

    asyncio.run(run())


def test_a_lone_norm_among_zeros_is_the_tallest_bar_of_its_log_row():
    from tui.widgets.sparklines import spark

    # the explosion's bucket of a whole run whose recurrent norms are 0 ever after
    assert spark([9.67e6, 0.0, 0.0], 3, log=True).plain == "█__"
    assert spark([0.1, 0.1], 2).plain == "▁▁"  # a flat loss or accuracy row stays low


def test_a_whole_runs_norm_range_starts_at_0_when_the_gradient_vanished():
    from tui.widgets.sparklines import log_range

    assert log_range([9.67e6, 0.0, 0.0]) == "0..1e7"  # make run's W: the explosion, then nothing
    assert log_range([3e-6, 2.0, 9.67e6]) == "1e-6..1e7"
    assert log_range([0.0, 0.0]) == "all 0"


def test_marks_sit_at_their_step_in_a_replay(tmp_path):
    events = _with_clip(list(synthetic_events(40, cell="srn")), 20, 20.0)
    events.insert(next(i for i, e in enumerate(events) if isinstance(e, Step) and e.step == 30) + 1,
                  Status(step=30, state="paused"))
    # the explosion's step, where a live run pauses itself: its ▲ shows over the p
    at = next(i for i, e in enumerate(events) if isinstance(e, Alarm) and e.step == 3) + 1
    events[at:at] = [Status(step=3, state="paused"), Status(step=3, state="running")]
    # paused again after step 34, rewound and clipped harder there: the rewind's r shows at step 35
    at = next(i for i, e in enumerate(events) if isinstance(e, Step) and e.step == 34) + 1
    events[at:at] = [Status(step=34, state="running"), Status(step=34, state="paused"),
                     Settings(step=34, clip_on=True, clip_max_norm=20.0, lr=0.2, cause="rewind"),
                     Settings(step=34, clip_on=True, clip_max_norm=10.0, lr=0.2, cause="command")]

    async def run():
        app = _replay(tmp_path, events, "marks.jsonl")
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: _drawn_step(app) == 40)
            view = app.monitor.sparklines._view
            marked = sorted((view.first_steps[point], mark.kind) for point, mark in view.marks if point < len(view.loss))
            assert marked == [(3, "alarm"), (3, "pause"), (20, "clip"), (30, "pause"), (34, "pause"), (35, "clip"), (35, "rewind")]
            row = next(line for line in _lines(app).splitlines() if line.lstrip().startswith("marks"))
            bars = row[1 + app.monitor.sparklines._widths()[0] + 1:]  # after the padding and the label
            width = app.monitor.sparklines.bars_width()
            pad = width - len(view.loss)
            assert bars[pad + 2] == "▲" and bars[pad + 19] == "c" and bars[pad + 29] == "p" and bars[pad + 34] == "r"
            await pilot.press("home", *["right"] * 9)  # step 10: the clip mark has not happened yet
            await _until(pilot, lambda: _drawn_step(app) == 10)
            assert {mark.kind for _, mark in app.monitor.sparklines._view.marks} == {"alarm", "pause"}

    asyncio.run(run())


def test_a_live_run_pauses_at_its_first_explosion_and_spells_out_the_keys():
    async def run():
        source = FakeLiveSource(_pausing(list(synthetic_events(2, finish=False))))
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 1)
            assert source.sent == []
            source.push([event for event in synthetic_events(4, finish=False) if 3 <= event.step < 4])
            source.push([Status(step=3, state="paused")])  # the engine pauses itself at the alarm's step
            await _until(pilot, lambda: "c clip and continue · p continue without · r rewind" in _lines(app))
            assert "exploded" in _lines(app) and source.sent == []
            # make run's screen at 80×24 (the engine draws the heatmaps as it pauses): under the panel's
            # title, the hidden state's units, one at least
            source.push([dataclasses.replace(next(e for e in synthetic_events(10) if e.type == "gates"), step=3)])
            await _until(pilot, lambda: any(line.lstrip().startswith("h0 ") for line in _lines(app).splitlines()))
            status = _lines(app).splitlines()[1]  # paused: the cap, and no rate of before the pause
            assert " · no cap · paused" in status and "steps/s" not in status
            await pilot.press("r")
            await _until(pilot, lambda: source.sent[-1] == Rewind())
            await pilot.press("c")  # clip (the textbook's 20) and continue
            await _until(pilot, lambda: source.sent[-2:] == [SetClip(on=True, max_norm=20.0, norm_type="2"), Resume()])
            source.push([Status(step=3, state="running")])
            await _until(pilot, lambda: "c clip and continue" not in _lines(app))
            assert "exploded" in _lines(app)  # continuing dismisses nothing
            assert " steps/s (no cap) · running" in _lines(app).splitlines()[1]

    asyncio.run(run())


def test_no_pause_on_alarm_keeps_going():
    async def run():
        source = FakeLiveSource(list(synthetic_events(10, finish=False)))  # pause_on_alarm not set
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: "exploded" in _lines(app) and "step 10/10" in _lines(app))
            assert source.sent == [] and "continue without" not in _lines(app)

    asyncio.run(run())


def test_advisor_averages_healthy_steps_and_a_sets_its_threshold():
    events = list(synthetic_events(12, cell="srn", finish=False))  # explosion at step 3, never healthy again
    events += [Alarm(step=12, kind="healthy", message="no trouble for 20 steps")]
    more = [dataclasses.replace(event, step=event.step + 12, total_norm=100.0 + event.step)
            for event in synthetic_events(12, cell="srn") if isinstance(event, Step)]

    async def run():
        source = FakeLiveSource(events + more)
        app = build_app(source)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 23)
            advice = app.state.advisor.at(23)
            healthy = [e.total_norm for e in events if isinstance(e, Step) and e.step < 3] + \
                      [e.total_norm for e in more]
            assert advice.healthy == len(healthy) == 14
            assert math.isclose(advice.average, sum(healthy) / len(healthy))
            assert advice.band == (advice.average * 0.5, advice.average * 10)
            await _until(pilot, lambda: f"a: clip at {advice.suggestion:g}" in _lines(app))
            await pilot.press("a")
            await _until(pilot, lambda: source.sent == [SetClip(on=True, max_norm=advice.suggestion, norm_type="2")])

    asyncio.run(run())


def test_a_replays_advisor_suggests_a_threshold_without_naming_keys_it_cannot_act_on(tmp_path):
    async def run():
        app = _replay(tmp_path, list(synthetic_events(12, cell="srn")))
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: "suggests" in _lines(app))
            assert "a: clip at" not in _lines(app) and "[ halves" not in _lines(app)
            assert "clip OFF" in _lines(app) and "(c: max_norm" not in _lines(app)  # nor c

    asyncio.run(run())


def test_advisor_leaves_out_an_explosions_run_up_and_calls_a_few_steps_no_stable_phase():
    from tui.advisor import MIN_STABLE, ClipAdvisor

    advisor = ClipAdvisor(history=1000)
    norms = [20.0 + step % 5 for step in range(1, 61)] + [300.0, 700.0, 2000.0]  # steady, then a climb
    for step, norm in enumerate(norms, start=1):
        advisor.observe_step(step, norm, 800.0 + step, 1.0, False)
    advisor.observe_step(64, 1e5, 9000.0, 1.0, False)
    advisor.observe_alarm(Alarm(step=64, kind="explosion", parameter="U", value=1e5))
    advice = advisor.at(63)
    assert advice.healthy == 50 and advice.average == sum(norms[10:60]) / 50  # the climb was no stable phase
    assert advice.stable and advice.suggestion == 22

    few = ClipAdvisor(history=100)
    for step in range(1, 7):
        few.observe_step(step, 20.0, 800.0, 1.0, False)
    assert few.at(5).healthy == 6 < MIN_STABLE and not few.at(5).stable


def test_a_noisy_small_loss_is_a_stable_phase_and_a_loss_that_climbs_is_not():
    from tui.advisor import ClipAdvisor

    noisy, climbing = ClipAdvisor(history=100), ClipAdvisor(history=100)
    for step in range(1, 51):  # memory's late phase: batch losses between 1e-4 and 7e-4
        noisy.observe_step(step, 0.05, (7e-4, 1e-4, 3e-4)[step % 3] if step < 50 else 7e-4, 1.0, False)
        climbing.observe_step(step, 20.0, 800.0 * 1.05 ** step, 1.0, False)
    assert noisy.at(49).stable  # the last batch's 7e-4 over the first's 1e-4 (x7) is noise
    assert climbing.at(49).loss_rise > 2 and not climbing.at(49).stable


def test_advisor_shows_pre_and_post_clip_and_the_norm_type(tmp_path):
    events = _with_clip(list(synthetic_events(30, cell="lstm")), 4, 5.0, norm_type="1")  # norms ~1e6 at steps 3-5

    async def run():
        app = _replay(tmp_path, events, "memory.jsonl")
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("home", "right", "right", "right", "right")  # step 5
            clipped = re.compile(r"clip ON 5: pre \d\.\d+e6 → post 5 · clipped 40% of the last 5 steps")
            await _until(pilot, lambda: clipped.search(_lines(app)))
            assert "L1 norm (sum of |g|)" in _lines(app)

    asyncio.run(run())


def test_with_clipping_on_the_advisor_says_where_the_threshold_stands_against_its_band():
    """After a rescue the norms it averages can be far above the threshold clipping uses: the screen
    says so beside the suggestion instead of leaving two thresholds side by side unexplained."""
    from tui.advisor import Advice
    from tui.state import RunSettings, RunView
    from tui.widgets.clip_advisor import advisor_text

    def line(max_norm: float, advice: Advice) -> str:
        view = RunView(settings=RunSettings(True, max_norm, "2", 0.2), advice=advice, pre_clip=600.0, clip_factor=0.04)
        return advisor_text(view, 120).plain.splitlines()[-1]

    stable = Advice(average=570.0, healthy=50, loss_rise=1.0, clipped_share=1.0, steps=100)
    assert line(24.0, stable).startswith("clip ON 24 (below the band): pre 600 → post 24")
    assert line(570.0, stable).startswith("clip ON 570 (in the band)")
    assert line(9000.0, stable).startswith("clip ON 9000 (above the band)")
    few = stable._replace(healthy=10)  # no stable phase: the band is a guess, nothing is said against it
    assert line(24.0, few).startswith("clip ON 24: pre")
    view = RunView(settings=RunSettings(True, 24.0, "2", 0.2), advice=stable, pre_clip=5890.0, clip_factor=24 / 5890)
    assert advisor_text(view, 78).plain.splitlines()[-1] == "clip ON 24 (below the band): pre 5.89e3 → post 24 · clipped 100%"


def test_the_advisor_says_in_words_that_fit_why_its_band_is_a_guess():
    """At 80 columns the warning under the suggestion is a whole sentence, not one cut mid-word."""
    from tui.advisor import Advice
    from tui.state import RunSettings, RunView
    from tui.widgets.clip_advisor import advisor_text

    few = Advice(average=79.3, healthy=2, loss_rise=1.0, clipped_share=0.0, steps=250)
    rising = Advice(average=79.3, healthy=40, loss_rise=12.0, clipped_share=0.0, steps=250)
    for advice, wide, narrow in [(few, "25 make a stable phase", "⚠ only 2 healthy steps (25 needed): the band is a guess"),
                                 (rising, "over those steps", "⚠ the loss rose ×12: no stable phase")]:
        view = RunView(settings=RunSettings(False, 1.0, "2", 0.2), advice=advice, pre_clip=231.0, clip_factor=1.0)
        assert wide in advisor_text(view, 120).plain.splitlines()[1]
        assert advisor_text(view, 120).plain.splitlines()[1].endswith("· [ halves max_norm")  # the key, named
        warning = advisor_text(view, 78).plain.splitlines()[1]
        assert warning.startswith(narrow) and len(warning) <= 78
        # where the clip keys cannot act (a replay, a finished run) the advice names none
        keyless = advisor_text(view, 120, keys=False).plain
        assert "a: clip at 79" in advisor_text(view, 120).plain and "suggests 79" in keyless
        assert "a: clip" not in keyless and "[ halves" not in keyless
    one = Advice(average=79.3, healthy=1, loss_rise=1.0, clipped_share=0.0, steps=250)
    view = RunView(settings=RunSettings(False, 1.0, "2", 0.2), advice=one, pre_clip=231.0, clip_factor=1.0)
    assert advisor_text(view, 78).plain.splitlines()[1].startswith("⚠ only 1 healthy step (25 needed)")


def test_clipping_switched_on_at_a_pause_is_said_to_start_with_the_next_step():
    """At the explosion's pause, a clips at 79: the step on screen ran unclipped, and the line says so
    instead of reading as a clip that did nothing (pre 1.96e3 → post 1.96e3)."""
    from tui.advisor import Advice
    from tui.state import RunSettings, RunView
    from tui.widgets.clip_advisor import advisor_text

    advice = Advice(average=79.3, healthy=2, loss_rise=1.0, clipped_share=0.0, steps=3)
    view = RunView(step=3, settings=RunSettings(True, 79.0, "2", 0.2), step_settings=RunSettings(False, 20.0, "2", 0.2),
                   advice=advice, pre_clip=1960.0, clip_factor=1.0)
    for width in (120, 78):
        line = advisor_text(view, width).plain.splitlines()[-1]
        assert line.startswith("clip ON 79 from the next step: step 3 ran unclipped") and len(line) <= width
    assert "step 3 ran unclipped: pre 1.96e3" in advisor_text(view, 120).plain
    same = view.__class__(**{**view.__dict__, "step_settings": RunSettings(True, 79.0, "2", 0.2)})
    assert advisor_text(same, 120).plain.splitlines()[-1].startswith("clip ON 79: pre 1.96e3 → post 1.96e3")
    halved_while_off = view.__class__(**{**view.__dict__, "settings": RunSettings(False, 10.0, "2", 0.2)})
    assert advisor_text(halved_while_off, 120).plain.splitlines()[-1].startswith("clip OFF: pre")


def test_replay_console_shows_only_what_had_happened(tmp_path):
    async def run():
        app = _replay(tmp_path, synthetic_events(30, cell="srn"), "evals.jsonl")
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: any("run finished" in str(line) for line in app.monitor.console_panel.lines))
            await pilot.press("home")
            await _until(pilot, lambda: not any("run finished" in str(line)
                                                for line in app.monitor.console_panel.lines))
            assert "no alarms" in _lines(app)

    asyncio.run(run())


def test_replay_header_and_console_are_as_of_the_cursors_step(tmp_path):
    """A speed cap set after step 10, a prediction after step 15, a pause from step 20 to 22."""
    after = {10: [Settings(step=10, clip_on=False, clip_max_norm=20.0, lr=0.2, speed=20.0, cause="command")],
             15: [Prediction(step=15, tokens=list("67001"), predicted=13, top=[[13, 0.9]], target=13)],
             20: [Status(step=20, state="paused")], 22: [Status(step=22, state="running")]}
    events = []
    for event in synthetic_events(30, cell="srn"):
        events.append(event)
        if isinstance(event, Step):
            events += after.get(event.step, [])
    path = str(tmp_path / "steered.jsonl")
    write_log(path, events)

    def header():
        return str(app.monitor.run_header.render())

    def console():
        return "\n".join(str(line) for line in app.monitor.console_panel.lines)

    app = build_app(LogFileSource(path))

    async def at(pilot, step):
        await pilot.press("home", *["right"] * (step - 1))
        await _until(pilot, lambda: f" step {step}/30 · " in header())

    async def run():
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await at(pilot, 10)
            assert "steps/s (no cap) · running" in header() and "→ 13" not in console()
            await at(pilot, 11)
            assert "(cap 20/s) · running" in header()
            await at(pilot, 15)
            await _until(pilot, lambda: "→ 13" in console())
            await at(pilot, 14)
            await _until(pilot, lambda: "→ 13" not in console())
            for step, state in ((20, " cap 20/s · paused"), (21, " cap 20/s · paused"), (22, "(cap 20/s) · running")):
                await at(pilot, step)
                assert f"{state} · " in header(), step
            await pilot.press("end")
            await _until(pilot, lambda: " step 30/30 · " in header())
            assert " · cap 20/s · finished · " in header() and "→ 13" in console()

    asyncio.run(run())


def test_no_two_series_of_the_norm_chart_share_a_colour(tmp_path):
    """Four runs overlaid, the front one clipped: its parameters, the threshold and each run's total."""
    paths = []
    for number in range(4):
        events = list(synthetic_events(30, cell="srn", seed=number))
        paths.append(str(tmp_path / f"{number}.jsonl"))
        write_log(paths[-1], _with_clip(events, 10, 20.0) if number == 0 else events)

    async def run():
        app = build_app(LogFilesSource(paths))
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end", "v")
            legend = app.monitor.charts.query_one("#chart-legend")
            await _until(pilot, lambda: "total D" in str(legend.render()))
            text = legend.render()
            colours, marks = {}, {}  # each legend line's swatch colour: the series (or mark) it names
            for span in text.spans:
                swatch, label = str(text)[span.start:span.end], str(text)[span.end:].split("\n", 1)[0].strip()
                if swatch.startswith(("━", "┄")):
                    colours[label] = str(span.style)
                elif swatch.startswith("│"):
                    marks[label] = str(span.style)
            assert {"‖∇W‖", "‖∇U‖", "‖∇b‖", "total", "clip 20", "total B", "total C", "total D"} <= set(colours)
            assert len(set(colours.values())) == len(colours), colours
            assert {"▲ alarm", "c clip"} <= set(marks)  # the vertical marks: in colours of their own
            assert not set(marks.values()) & {colours[label] for label in colours if label != "clip 20"}

    asyncio.run(run())


def test_the_accuracy_chart_is_labelled_0_to_1(tmp_path):
    async def run():
        app = _replay(tmp_path, synthetic_events(300))  # dev accuracy from 0.07 to 0.95
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end", "v")
            await _until(pilot, lambda: "dev accuracy" in _lines(app))
            lines = _lines(app).splitlines()
            axis = max(line.rfind("┤") for line in lines)  # the accuracy chart is the rightmost
            labels = [line[:axis].split()[-1] for line in lines if line.rfind("┤") == axis]
            assert labels == ["1", "0.5", "0"], labels

    asyncio.run(run())


def test_a_charts_three_y_labels_are_told_apart():
    from tui.widgets.charts import _y_labels

    class Axis:
        def yticks(self, levels, labels):
            self.labels = labels

    axis = Axis()
    _y_labels(axis, [9.72, 10.5])  # a dev perplexity late in training: 9.7, 10, 10 said nothing
    assert axis.labels == ["9.72", "10.1", "10.5"]
    _y_labels(axis, [188.0, 19855.9])
    assert axis.labels == ["188", "1e4", "2e4"]


def test_the_whole_runs_charts_are_titled_and_share_their_step_axis(tmp_path):
    async def run():
        app = _replay(tmp_path, synthetic_events(160, steps_per_epoch=100))  # one evaluation, at step 100
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end", "w", "v")
            await _until(pilot, lambda: "dev accuracy" in _lines(app))
            await _until(pilot, lambda: "loss (whole run)" in _lines(app))
            lines = _lines(app).splitlines()
            ticks = lines[next(i for i, line in enumerate(lines) if "└" in line) + 1].split()  # under the x axes
            assert len(ticks) % 3 == 0 and ticks[: len(ticks) // 3] * 3 == ticks, ticks  # the same under each chart

    asyncio.run(run())


def test_a_paused_replay_says_so_at_80_columns(tmp_path):
    async def run():
        app = _replay(tmp_path, synthetic_events(2000), "a-long-log-name-that-a-narrow-terminal-cuts.jsonl")
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("home")  # the cursor at step 1, the playback paused
            await _until(pilot, lambda: " · running · ⏸ replay" in _lines(app).splitlines()[1])
            await pilot.press("p")
            await _until(pilot, lambda: " · running · ▶ replay 10/s" in _lines(app).splitlines()[1])

    asyncio.run(run())


def test_with_clipping_off_the_header_shows_the_max_norm_that_c_would_switch_on():
    async def run():
        source = FakeLiveSource(list(synthetic_events(20, finish=False)))  # clipping off, max_norm 20
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: "clip OFF (c: max_norm=20)" in _lines(app).splitlines()[0])
            await pilot.press("left_square_bracket")
            await _until(pilot, lambda: source.sent and type(source.sent[-1]) is SetClip)
            assert source.sent[-1].max_norm == 10 and not source.sent[-1].on
            source.push([Settings(run="synthetic", step=20, clip_on=False, clip_max_norm=10.0, cause="command")])
            await _until(pilot, lambda: "clip OFF (c: max_norm=10)" in _lines(app).splitlines()[0])

    asyncio.run(run())
