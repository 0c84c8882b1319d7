"""The app under Textual's Pilot, fed recorded logs and a fake live source (no torch, no child)."""

import asyncio
import contextlib
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from rich.cells import cell_len
from textual.events import Key
from textual.widgets import Input

from engine.commands import (GatesCommand, Generate, Pause, Predict, Resume, Rewind, SetClip, SetSpeed, StepCommand,
                             Stop)
from engine.events import Alarm, Settings, Generation, Notice, Prediction, RunStarted, Status, Step
from tui.app import build_app
from tui.screens.help import HelpScreen
from tui.sources import LogFileSource, StdinSource
from tui.synthetic import gates_event, synthetic_events, write_log
from tui.widgets.console import parse_digits

from monitor_fakes import FakeLiveSource, lstm_log, srn_log, until as _until  # noqa: F401 (fixtures)

SIZE = (120, 40)


def _events(n=10, cell="srn", finish=False):
    return list(synthetic_events(n, cell=cell, finish=finish))


def _last_line(app):
    lines = app.monitor.console_panel.lines
    return str(lines[-1]) if lines else ""


def _timeline_text(app):
    return str(app.monitor.timeline.render())


def _header(app):
    return str(app.monitor.run_header.render())


def _chart_legend(app):
    return str(app.monitor.charts.query_one("#chart-legend").render())


def test_timeline_tells_the_explosion_from_its_step_in_a_replay(srn_log):
    async def run():
        app = build_app(LogFileSource(srn_log))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("home")  # step 1, playback paused
            await _until(pilot, lambda: "no alarms" in _timeline_text(app))
            await pilot.press("right")  # step 2
            await _until(pilot, lambda: " step 2/60 · " in _header(app))  # drawn with the timeline
            assert "exploded" not in _timeline_text(app)
            await pilot.press("right")  # step 3: the alarm step
            await _until(pilot, lambda: "exploded" in _timeline_text(app))
            text = _timeline_text(app)
            assert "step 3: ‖∇W‖ median 10 → " in text and "(×" in text
            await pilot.press("escape", "p", "p")  # nothing dismisses it
            await pilot.press("end")
            await _until(pilot, lambda: " step 60/60 · " in _header(app))
            assert "step 3: ‖∇W‖ median 10 → " in _timeline_text(app)

    asyncio.run(run())


def test_live_timeline_keeps_every_alarm_and_the_first_explosion():
    async def run():
        source = FakeLiveSource(_events(4))  # the explosion at step 3
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: "exploded" in _timeline_text(app), timeout=2.0)
            source.push([Alarm(step=5, kind="non_finite", parameter="U", value=float("nan"))])
            await _until(pilot, lambda: "update skipped" in _timeline_text(app), timeout=1.0)
            source.push([Alarm(step=9, kind="healthy", message="no trouble for 20 steps")])
            await _until(pilot, lambda: "healthy again" in _timeline_text(app), timeout=1.0)
            source.push([Alarm(step=12, kind="saturation", parameter="W", value=0.0, ratio=0.0, median=1.4e5),
                         Alarm(step=13, kind="saturation", parameter="U", value=2.2, ratio=2.2 / 9.67e6, median=9.67e6)])
            await _until(pilot, lambda: "tanh units saturated" in _timeline_text(app), timeout=1.0)
            text = _timeline_text(app)
            order = [text.index(words) for words in ("exploded", "update skipped", "healthy again", "saturated")]
            assert order == sorted(order) and "step 12: ‖∇W‖ peak 1.4e5 → 0, tanh units saturated" in text
            assert "step 13: ‖∇U‖ peak 9.67e6 → 2.2 (×2e-7), tanh units saturated" in text
            source.push([Alarm(step=20 + n, kind="explosion", parameter="U", value=10.0 ** (n + 8), ratio=1e4,
                               median=10.0 ** (n + 4)) for n in range(10)])
            await _until(pilot, lambda: "step 29:" in _timeline_text(app), timeout=1.0)
            text = _timeline_text(app)  # no room for twelve: the first explosion stays, the newest follow
            assert "step 3: ‖∇W‖" in text and "more…" in text and "step 5:" not in text

    asyncio.run(run())


KEYS = [
    ("c", SetClip(on=True, max_norm=20.0, norm_type="2")),
    ("left_square_bracket", SetClip(on=False, max_norm=10.0, norm_type="2")),
    ("right_square_bracket", SetClip(on=False, max_norm=40.0, norm_type="2")),
    ("p", Pause()),
    ("n", StepCommand(n=1)),
    ("r", Rewind()),
    ("plus", SetSpeed(steps_per_s=0.0)),
    ("minus", SetSpeed(steps_per_s=200.0)),
    ("g", GatesCommand(input="")),
]


@pytest.mark.parametrize("key,expected", KEYS, ids=[key for key, _ in KEYS])
def test_each_key_sends_its_command(key, expected):
    async def run():
        source = FakeLiveSource(_events(5))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 4)
            await pilot.press(key)
            await _until(pilot, lambda: source.sent)
            assert source.sent == [expected]

    asyncio.run(run())


def test_clip_header_follows_the_engine_not_the_key():
    async def run():
        source = FakeLiveSource(_events(5))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 4)
            await pilot.press("c")
            await _until(pilot, lambda: "requested" in _header(app))
            assert "clip OFF" in _header(app)  # until the engine says otherwise
            source.push([Settings(step=5, clip_on=True, clip_max_norm=20.0, clip_norm_type="2", cause="command")])
            await _until(pilot, lambda: "clip ON max_norm=20 L2" in str(app.monitor.run_header.render()), timeout=1)

    asyncio.run(run())


def test_keys_pressed_before_the_engine_answers_build_on_each_other():
    """Three quick presses of - step the cap down three times, and [ [ halves twice: each press starts
    from what the one before asked, until the engine's answer says where the run is."""
    async def run():
        source = FakeLiveSource(_events(5))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 4)
            await pilot.press("minus", "minus", "minus", "left_square_bracket", "left_square_bracket")
            await _until(pilot, lambda: len(source.sent) == 5)
            assert source.sent == [SetSpeed(steps_per_s=200.0), SetSpeed(steps_per_s=100.0), SetSpeed(steps_per_s=50.0),
                                   SetClip(on=False, max_norm=10.0, norm_type="2"),
                                   SetClip(on=False, max_norm=5.0, norm_type="2")]
            source.push([Settings(step=5, clip_on=False, clip_max_norm=20.0, clip_norm_type="2", speed=20.0,
                                  cause="command")])  # the engine's answer: from here the keys build on it
            await _until(pilot, lambda: "20.0/s" in _header(app) or "cap 20" in _header(app))
            await pilot.press("plus")
            await _until(pilot, lambda: len(source.sent) == 6)
            assert source.sent[-1] == SetSpeed(steps_per_s=50.0)

    asyncio.run(run())


def test_the_settings_event_updates_the_header_while_paused():
    async def run():
        source = FakeLiveSource(_events(5) + [Status(step=5, state="paused")])
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.status is not None and app.state.status.state == "paused")
            await pilot.press("c")
            source.push([Settings(step=5, clip_on=True, clip_max_norm=20.0, cause="command")])
            await _until(pilot, lambda: "clip ON max_norm=20 L2" in str(app.monitor.run_header.render()), timeout=1)
            await pilot.press("c")
            source.push([Settings(step=5, clip_on=False, clip_max_norm=20.0, cause="command")])
            await _until(pilot, lambda: "clip OFF" in str(app.monitor.run_header.render()), timeout=1)

    asyncio.run(run())


def test_pause_resume_follows_status():
    async def run():
        source = FakeLiveSource(_events(3) + [Status(step=3, state="paused")])
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.status is not None and app.state.status.state == "paused")
            await pilot.press("p")
            assert source.sent == [Resume()]

    asyncio.run(run())


def test_the_heatmaps_title_keeps_whole_words_at_80_columns():
    """After the explosion every SRN unit is saturated: at 80 columns the title still says so in
    whole words (the ramp's legend and then the input, which labels the columns, give way first)."""
    from tui.widgets.gate_heatmaps import GateHeatmaps

    tokens = list("67001000000000000000")
    saturated = gates_event("srn", tokens, step=250)
    saturated = replace(saturated, matrices={"hidden": [[1.0] * len(tokens) for _ in range(32)]})
    panel = GateHeatmaps()
    panel.gates = saturated
    wide = panel._lines(160, 100)[0].plain
    assert wide == ("SRN hidden state h_t for 6 7 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 · step 250 · 100% saturated (|h| > 0.99)"
                    " · ramp ' .:-=+*#%@' low→high")
    assert panel._lines(78, 100)[0].plain == "SRN hidden state h_t · step 250 · 100% saturated"
    short = panel._lines(78, 12)[0].plain  # a short panel shows fewer units and says which
    assert short.startswith("SRN hidden state h_t · step 250 · 100% saturated · h0-h") and short.endswith(" of 32")


def test_heatmap_columns_are_labelled_by_the_input_digits():
    async def run():
        source = FakeLiveSource(_events(5, cell="lstm"))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 4)
            source.push([gates_event("lstm", list("3141592"), step=5, request="3 1 4 1 5 9 2")])
            shown = app.monitor.heatmaps
            await _until(pilot, lambda: shown.gates is not None and shown.gates.request == "3 1 4 1 5 9 2")
            await _until(pilot, lambda: shown.column_labels == list("3141592"))
            lines = str(app.monitor.heatmaps.render()).splitlines()
            assert any(line.strip().startswith("3141592") for line in lines)
            for name in ("input gate", "forget gate", "output gate", "cell state"):
                assert name in "\n".join(lines)
            assert "h0" in "\n".join(lines)

    asyncio.run(run())


def test_console_sends_predict_and_gates_and_shows_the_answer():
    async def run():
        source = FakeLiveSource(_events(3))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            await pilot.press("slash", *"6 7 0 0 1", "enter")
            await _until(pilot, lambda: len(source.sent) == 2)
            assert source.sent == [Predict(input="6 7 0 0 1"), GatesCommand(input="6 7 0 0 1")]
            source.push([Prediction(tokens=list("67001"), predicted=13, top=[[13, 0.8], [12, 0.1], [14, 0.05]],
                                    target=13)])
            await _until(pilot, lambda: "top-3" in _last_line(app))
            assert "→ 13" in _last_line(app)

    asyncio.run(run())


@pytest.mark.parametrize("text", ["", "6 x 7", "12 3", "7", "🙂", "6" * 500, "1 " * 25])
def test_malformed_console_input_gets_one_line(text):
    with pytest.raises(ValueError) as problem:
        parse_digits(text, 20)  # the length of the run's sequences: more digits than it reads are refused
    assert "\n" not in str(problem.value)

    async def run():
        source = FakeLiveSource(_events(3))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            app.monitor.console_panel.post_message(app.monitor.console_panel.Submitted(text))
            await _until(pilot, lambda: _last_line(app) == str(problem.value))
            assert source.sent == []

    asyncio.run(run())


def _console_lines(app):
    return str(app.monitor.console_panel.query_one("#console-log").render()).splitlines()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_language_model_console_shows_prefix_then_streamed_lines(size):
    events = list(synthetic_events(3, task="lm", cell="lstm"))

    async def run():
        source = FakeLiveSource(events)
        app = build_app(source)
        async with app.run_test(size=size) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            # all at once, as a terminal delivers "/" and a pasted prefix: none may miss the input
            for key, character in [("slash", "/"), *[(char, char) for char in "床前明月"], ("enter", "\r")]:
                app.post_message(Key(key, character))
            await _until(pilot, lambda: len(source.sent) == 2)
            assert source.sent == [Generate(prefix="床前明月", length=100, request_id=1),
                                   GatesCommand(input="床前明月")]
            assert app.focused is app.query_one("#console-input")  # ready for the next prefix
            source.push([Generation(prefix="床前明月", text="光，\n疑", request_id=1),
                         Generation(prefix="床前明月", text="是地上霜。", done=True, request_id=1)])
            await _until(pilot, lambda: "霜" in "".join(_console_lines(app)))
            assert _console_lines(app)[-2:] == ["床前明月光，", "疑是地上霜。"]  # real line breaks, no ⏎
            block = app.monitor.console_panel.lines[-1]
            assert [str(span.style) for span in block.spans][:1] == ["dim"] and block.spans[0].end == 4

            await pilot.press(*"春眠", "enter")  # a second prefix starts a block of its own
            await _until(pilot, lambda: len(source.sent) == 4)
            assert source.sent[-2:] == [Generate(prefix="春眠", length=100, request_id=2),
                                        GatesCommand(input="春眠")]
            source.push([Generation(prefix="春眠", text="不觉晓", done=True, request_id=2)])
            await _until(pilot, lambda: _console_lines(app)[-1] == "春眠不觉晓")
            assert "床前明月光，" in _console_lines(app)  # the first one stays above while there is room

    asyncio.run(run())


def test_long_wide_generation_wraps_at_cell_width_and_notes_unknown_characters_once():
    events = list(synthetic_events(3, task="lm", cell="lstm"))

    async def run():
        source = FakeLiveSource(events)
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            chunks = ["春眠不觉晓处处闻啼鸟夜来风雨声花落知多少" * 2, "白日依山尽"]
            source.push([Generation(prefix="x春", text=chunks[0], unknown=["x"], request_id=3),
                         Generation(prefix="x春", text=chunks[1], unknown=["x"], done=True, request_id=3)])
            await _until(pilot, lambda: "尽" in "".join(_console_lines(app)))
            lines = _console_lines(app)
            width = app.monitor.console_panel.query_one("#console-log").size.width
            assert all(cell_len(line) <= width for line in lines)
            assert "".join(lines[-2:]).endswith("白日依山尽")
            notes = [str(line) for line in app.monitor.console_panel.lines if "not in the vocabulary" in str(line)]
            assert notes == ["not in the vocabulary, read as unknown: 'x'"]

    asyncio.run(run())


def test_a_generation_of_many_short_lines_flows_with_its_line_breaks_marked_when_they_do_not_fit():
    """Early in training a model writes mostly line breaks: at 80×24 the console shows the text, its
    breaks as ⏎, instead of the prefix and "… 61 more lines"."""
    events = list(synthetic_events(3, task="lm", cell="lstm", finish=False))
    text = "，\n，，山。\n" * 12 + "月"

    async def run():
        source = FakeLiveSource(events)
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            source.push([Generation(prefix="春眠", text=text, done=True, request_id=1)])
            await _until(pilot, lambda: "月" in "".join(_console_lines(app)))
            shown = "".join(_console_lines(app))
            assert shown.startswith("春眠，⏎，，山。⏎") and shown.endswith("，，山。⏎月") and "more line" not in shown

    asyncio.run(run())


@contextlib.asynccontextmanager
async def _live_lm(size=(120, 40), steps=3):
    """A live language-model run of ``steps`` steps on screen: the app, its fake source and the pilot."""
    source = FakeLiveSource(list(synthetic_events(steps, task="lm", cell="lstm", finish=False)))
    app = build_app(source)
    async with app.run_test(size=size) as pilot:
        await _until(pilot, lambda: app.state.last_index == steps - 1)
        yield app, source, pilot


def test_the_heatmaps_keep_rows_of_units_under_a_console_full_of_generations():
    """A student types prefixes to see their gates: at 120×40 the console's answers may not take the
    heatmaps' room down to their headings."""
    async def run():
        async with _live_lm(steps=30) as (app, source, pilot):
            for request in range(1, 5):
                source.push([Generation(prefix="time traveller", text="of stome were seed and\nI doong " * 3,
                                        done=True, request_id=request)])
            await _until(pilot, lambda: len(app.monitor.console_panel.lines) >= 4)
            await pilot.pause(0.2)
            # a title, a gate's name, range and input: four lines; at least four units under them
            assert app.monitor.heatmaps_scroll.size.height >= 4 + 4

    asyncio.run(run())


def test_a_prefix_of_spaces_is_sent_and_a_long_ones_heatmaps_say_what_they_show():
    async def run():
        async with _live_lm() as (app, source, pilot):
            app.monitor.console_panel.post_message(app.monitor.console_panel.Submitted("   "))
            await _until(pilot, lambda: len(source.sent) == 2)
            assert source.sent[0].prefix == "   "  # the space is a character of the corpus
            long = "the time traveller said, " * 4
            app.monitor.console_panel.post_message(app.monitor.console_panel.Submitted(long))
            await _until(pilot, lambda: len(source.sent) == 4)
            assert source.sent[2].prefix == long and source.sent[3].input == long[:64]
            await _until(pilot, lambda: "the heatmaps show the first 64 of its 100 characters" in _console_lines(app))

    asyncio.run(run())


def test_an_older_answer_that_no_longer_fits_is_left_out_whole_not_shown_as_a_fragment():
    async def run():
        async with _live_lm() as (app, source, pilot):
            source.push([Generation(prefix="a", text="bc\ndef\nghi", done=True, request_id=1)])
            await _until(pilot, lambda: _console_lines(app)[-1:] == ["ghi"])
            source.push([Generation(prefix="j", text="kl\nmno\npqr", done=True, request_id=2)])
            await _until(pilot, lambda: _console_lines(app)[-1:] == ["pqr"])
            assert _console_lines(app) == ["jkl", "mno", "pqr"]  # not "def", "ghi" above them

    asyncio.run(run())


def test_a_generation_of_blanks_says_so_instead_of_showing_nothing():
    """Early in training the likeliest next character is a space: a student must see that the model
    answered, with blanks, rather than an empty line."""
    async def run():
        async with _live_lm((80, 24)) as (app, source, pilot):
            source.push([Generation(prefix="the time", text=" " * 60, request_id=1),
                         Generation(prefix="the time", text=" " * 40, done=True, request_id=1)])
            await _until(pilot, lambda: "blank" in "".join(_console_lines(app)))
            assert "the time" in "".join(_console_lines(app))
            assert " ".join(" ".join(_console_lines(app)).split()).endswith(
                "the time (100 blank characters: the likeliest this model knows so far)")  # said, not drawn
            source.push([Generation(prefix="a", text=" time machine", done=True, request_id=2)])
            await _until(pilot, lambda: _console_lines(app)[-1].startswith("a time machine"))
            assert "blank" not in _console_lines(app)[-1]

    asyncio.run(run())


@pytest.mark.parametrize("corpus, example", [("tangshi300", "床前明月光"), ("timemachine", "time traveller")])
def test_a_language_model_run_names_its_corpus_and_suggests_a_prefix_from_it(corpus, example):
    events = [replace(event, config={**event.config, "corpus": corpus}) if isinstance(event, RunStarted) else event
              for event in synthetic_events(3, task="lm", cell="lstm", finish=False)]

    async def run():
        app = build_app(FakeLiveSource(events))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            await _until(pilot, lambda: f"e.g. {example}" in app.monitor.console_panel.query_one("#console-input").placeholder)
            assert f"· lm {corpus} ·" in _header(app)

    asyncio.run(run())


def test_language_model_heatmaps_are_labelled_by_the_prefix_characters():
    async def run():
        source = FakeLiveSource(list(synthetic_events(3, task="lm", cell="lstm")))
        app = build_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            await pilot.press("slash", *"床前", "space", "月", "enter")
            await _until(pilot, lambda: GatesCommand(input="床前 月") in source.sent)
            source.push([gates_event("lstm", list("床前 月"), step=3, request="床前 月", hidden=64)])
            shown = app.monitor.heatmaps
            await _until(pilot, lambda: shown.gates is not None and shown.gates.request == "床前 月")
            await _until(pilot, lambda: shown.column_labels == list("床前 月"))
            lines = str(shown.render()).splitlines()
            assert any(line.strip().startswith("床前␣ 月") for line in lines)  # a space shows as ␣
            assert sum(line.lstrip().startswith("h") for line in lines) >= 64  # every unit: the panel scrolls
            scroll = app.query_one("#heatmaps-scroll")
            assert scroll.max_scroll_y > 0
            scroll.scroll_end(animate=False)
            await _until(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y > 0)
    asyncio.run(run())


def test_help_screen_keeps_the_monitor_keys_from_acting():
    async def run():
        source = FakeLiveSource(_events(5))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 4)
            await pilot.press("question_mark")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("c", "p", "n", "g", "v")
            await pilot.pause()  # the keys are handled (by the help screen, which ignores them)
            assert source.sent == [] and not app.monitor.charts.display
            await pilot.press("escape")
            await _until(pilot, lambda: app.screen is app.monitor)
            await pilot.press("c")
            await _until(pilot, lambda: source.sent)
            assert source.sent == [SetClip(on=True, max_norm=20.0, norm_type="2")]

    asyncio.run(run())


def _footer_keys(app) -> set[str]:
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show}


def test_when_training_ends_the_footer_keeps_only_the_keys_that_still_reach_the_model():
    async def run():
        source = FakeLiveSource(_events(5, finish=True))
        app = build_app(source)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.state.status is not None and app.state.status.state == "finished")
            await _until(pilot, lambda: "c" not in _footer_keys(app))
            keys = _footer_keys(app)
            assert not keys & {"c", "left_square_bracket", "p", "n", "r", "plus", "minus", "a", "f"}, keys
            assert {"slash", "g", "question_mark", "q"} <= keys  # the console still answers from the model
            await pilot.press("c", "p")
            await pilot.press("g")
            await _until(pilot, lambda: source.sent)
            assert source.sent == [GatesCommand(input="")]

    asyncio.run(run())


def test_replay_and_stream_list_only_the_keys_that_act(srn_log):
    """No engine, no steering and no console (which the engine answers): the footer and the help leave
    them out, and the keys do nothing."""
    steering = {"c", "left_square_bracket", "right_square_bracket", "r", "g", "a", "f", "slash", "o"}

    async def run():
        app = build_app(LogFileSource(srn_log))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            keys = _footer_keys(app)
            assert not keys & steering and {"p", "n", "plus", "minus", "left", "right"} <= keys
            await pilot.press("c", "slash")
            assert app.state.latest_settings.clip_on is False and not isinstance(app.focused, Input)
            await pilot.press("question_mark")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen))
            placeholder = app.monitor.console_panel.query_one("#console-input").placeholder
            assert placeholder.startswith("replaying a recorded run: there is no engine")  # not "/ then …"
            listed = [key.key for key in app.screen.keys]
            assert "c" not in listed and "/" not in listed and "esc" not in listed and "o" not in listed
            assert {"p", "n", "+ -", "← → home end", "w", "?", "q"} <= set(listed)

    asyncio.run(run())
    read, write = os.pipe()
    os.close(write)

    async def run_stream():
        app = build_app(StdinSource(read))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            assert "the stream ended" in _last_line(app)  # the viewer says so
            # the header is redrawn at the next frame
            await _until(pilot, lambda: "stream ended" in str(app.monitor.run_header.render()))
            keys = _footer_keys(app)
            assert not keys & (steering | {"n", "plus", "minus", "left", "right"}) and {"question_mark", "q", "w"} <= keys

    asyncio.run(run_stream())
    os.close(read)


@pytest.mark.parametrize("finish, state", [(False, "cut off"), (True, "finished")])
def test_a_stream_that_ends_says_whether_the_run_finished(finish, state):
    """The ssh pipe: once the trainer exits or the pipe closes, the header stops saying running."""
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:  # a pipe holds the few events; closing it ends the stream
        pipe.writelines(event.to_json() + "\n" for event in _events(6, finish=finish))

    async def run():
        app = build_app(StdinSource(read))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: "stream ended" in str(app.monitor.run_header.render()))
            header = str(app.monitor.run_header.render())
            assert "step 6/6 · " in header and f" · {state} · stream ended" in header and "running" not in header
            assert ("before the run finished" in _last_line(app)) is not finish

    asyncio.run(run())
    os.close(read)


def test_a_log_that_ends_before_its_run_finished_reads_as_cut_off_at_its_end(tmp_path):
    path = str(tmp_path / "killed.jsonl")  # the log of a run killed after step 8
    write_log(path, synthetic_events(8, finish=False))

    async def run():
        app = build_app(LogFileSource(path))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: " step 8/8 · " in _header(app))
            assert " · cut off · " in _header(app)
            await pilot.press("left")  # before the end the run was running
            await _until(pilot, lambda: " step 7/8 · " in _header(app))
            assert " · running · " in _header(app)

    asyncio.run(run())


def test_replay_scrubs_home_end_and_plays(lstm_log):
    async def run():
        app = build_app(LogFileSource(lstm_log))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            assert app.playback.index == app.state.last_index == 29
            await pilot.press("home", "n", "n")
            assert app.playback.index == 2
            await pilot.press("p")  # play
            await _until(pilot, lambda: app.playback.index > 2)
            await pilot.press("v")  # full charts while replaying
            await _until(pilot, lambda: "total" in _chart_legend(app))  # drawn, not only switched on
            assert app.monitor.charts.display and not app.monitor.sparklines.display

    asyncio.run(run())


@pytest.mark.parametrize("size", [(80, 24), (60, 16), (40, 10)])
def test_small_terminals_do_not_crash(size, lstm_log):
    async def run():
        app = build_app(LogFileSource(lstm_log))
        async with app.run_test(size=size) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end", "v")
            await _until(pilot, lambda: app.monitor.charts.display)
            await pilot.press("v", "question_mark")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await _until(pilot, lambda: app.screen is app.monitor and app.monitor.sparklines.display)
            if size[0] < 60:  # under the minimum: the one line that asks for more room
                await _until(pilot, lambda: app.monitor.too_small.display and app.monitor.has_class("tiny"))
            else:  # the run at its last step, as after the keys
                await _until(pilot, lambda: " step 30/30 · " in _header(app))
            assert app.is_running

    asyncio.run(run())


def test_child_death_shows_its_error_and_keeps_the_data():
    async def run():
        source = FakeLiveSource(_events(6))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 5)
            source.die(1, "Traceback (most recent call last):\nRuntimeError: the engine broke")
            await _until(pilot, lambda: "ENGINE FAILED" in _timeline_text(app))
            assert "the engine broke" in _timeline_text(app)
            assert app.state.last_index == 5 and app.monitor.sparklines.display
            await pilot.press("c")
            assert "not running" in _last_line(app)

    asyncio.run(run())


def test_quit_sends_stop_and_waits_for_the_engine():
    async def run():
        source = FakeLiveSource(_events(3))
        app = build_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.state.last_index == 2)
            await pilot.press("q")
            await _until(pilot, lambda: not app.is_running)
        return app.return_code

    assert asyncio.run(run()) == 0


def test_no_color_is_honoured():
    code = ("import asyncio; from tui.app import build_app; from tui.sources import LogFileSource\n"
            "app = build_app(LogFileSource('/nonexistent'))\n"
            "async def main():\n"
            "    async with app.run_test() as pilot:\n"
            "        await pilot.pause()\n"
            "asyncio.run(main()); print(app.no_color)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, NO_COLOR="1")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr


def test_recorded_engine_run_shows_the_explosion_of_W():
    """A real log of `rnnlab-tui train --cell srn --lr 0.2` (its first 30 lines), replayed."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "srn_explosion.jsonl")

    async def run():
        app = build_app(LogFileSource(path))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("home", "right", "right")  # step 3: W's norm is 114x its median
            await _until(pilot, lambda: "exploded" in _timeline_text(app))
            assert "step 3: ‖∇W‖" in _timeline_text(app) and "(×114)" in _timeline_text(app)
            assert "clip OFF" in str(app.monitor.run_header.render())

    asyncio.run(run())


GARBAGE = [
    '{"type":"step","run":"x","step":4,"grad_norms":[1,2],"loss":1}',
    '{"type":"step","run":"x","step":"five","loss":"high"}',
    '{"type":"alarm","run":"x","step":5,"kind":"explosion","parameter":"W","value":"big"}',
    '{"type":"alarm","run":"x","step":6,"kind":"whatever","parameter":"W","value":1e308,"ratio":1e308,"median":0}',
    '{"type":"gates","run":"x","step":6,"tokens":["6","7"],"cell":"lstm","matrices":{"hidden":"x","input_gate":[[1],[0.5,"a",null]]}}',
    '{"type":"prediction","run":"x","step":6,"tokens":["6"],"predicted":3,"top":[[1]]}',
    '{"type":"eval","run":"x","step":6,"split":"dev","accuracy":"good"}',
    '{"type":"status","run":"x","step":6,"state":7}',
    '{"type":"step","run":"x","step":7,"loss":{"$float":"nan"},"grad_norms":{"W":{"$float":"inf"}},"total_norm":{"$float":"nan"}}',
    '[1,2,3]', '"just a string"', '{"type":"run_started","config":"not a dict"}', '{"type":', '\\u0000\\xff',
]


def test_garbage_in_a_log_is_skipped_without_a_traceback(tmp_path):
    path = tmp_path / "garbage.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for event in synthetic_events(3):
            handle.write(event.to_json() + "\n")
        handle.write("\n".join(GARBAGE) + "\n")

    async def run():
        app = build_app(LogFileSource(str(path)))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end", "v")
            await _until(pilot, lambda: "total" in _chart_legend(app))  # the charts drew the bad values
            await pilot.press("v", "home", "end")
            await _until(pilot, lambda: app.monitor.sparklines.display and " step 7/3" in _header(app))
            assert app.is_running
            assert app.state.last_index == 3  # the three good steps and the non-finite one
            assert "skipped" in "\n".join(str(line) for line in app.monitor.console_panel.lines)

    asyncio.run(run())
