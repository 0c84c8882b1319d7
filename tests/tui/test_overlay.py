"""Several runs on one screen: two recorded logs overlaid (no torch, no child)."""

import asyncio

from engine.events import Settings
from tui.app import build_app
from tui.format import short
from tui.runs import RunSet
from tui.sources import LogFilesSource
from tui.synthetic import synthetic_events, write_log
from monitor_fakes import until as _until

SIZE = (120, 40)


def _log(path, steps, clip=None, seed=0):
    """A synthetic run of ``steps`` steps, clipped at ``clip`` from its start (None: unclipped)."""
    def events():
        for event in synthetic_events(steps, seed=seed):
            if isinstance(event, Settings) and clip is not None:
                event = Settings(run=event.run, clip_on=True, clip_max_norm=clip, lr=event.lr)
            yield event
    write_log(str(path), events())
    return str(path)


def _header(app):
    return str(app.monitor.run_header.render())


def _sparklines(app):
    return str(app.monitor.sparklines.render())


def test_two_logs_of_different_lengths_are_overlaid_and_scrubbed_together(tmp_path):
    long_log = _log(tmp_path / "a.jsonl", 120)
    short_log = _log(tmp_path / "b.jsonl", 80, clip=1.0, seed=1)

    async def run():
        app = build_app(LogFilesSource([long_log, short_log]))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: "step 120 · finished" in _header(app))
            header = _header(app)
            # both runs listed with their letter; the one setting they differ in is said, the shared ones not
            first, second = header.splitlines()[2:4]
            # (the synthetic logs also differ in their epochs: a 120-step run has 24 of 5 steps, an 80-step one 16)
            assert first.startswith("▶━A clip off · epochs 24 ·") and first.endswith("step 120 · finished · synthetic")
            assert second.startswith(" ━B clip 1 L2 · epochs 16 ·") and second.endswith("step 80 · finished · synthetic#2")
            assert "lr 0.2" not in header.split("\n", 2)[2]
            # the run behind the front has its own rows; past its last step they are empty
            assert "loss B" in _sparklines(app) and "total B" in _sparklines(app)
            await pilot.press("home", *["right"] * 9)  # scrubbing: step 10 of every run
            await _until(pilot, lambda: "step 10/120" in _header(app))
            lines = _header(app).splitlines()
            assert lines[2].startswith("▶━A clip off") and lines[2].endswith("step 10 · running · synthetic")
            assert lines[3].startswith(" ━B clip 1 L2") and lines[3].endswith("step 10 · running · synthetic#2")
            loss_b = next(line for line in _sparklines(app).splitlines() if line.startswith("loss B"))
            assert loss_b.split()[-1] == short(app.runs.states[1].loss[9])  # run B's loss at step 10
            await pilot.press("end", "w")  # the whole run in buckets: beside them still B's last loss
            await _until(pilot, lambda: app.monitor.sparklines._view.whole)
            behind = app.monitor.sparklines._overlays[0]
            last_b = app.runs.states[1].loss[-1]
            assert [value for value in behind.loss if value is not None][-1] > last_b  # its bucket's largest
            loss_b = next(line for line in _sparklines(app).splitlines() if line.startswith("loss B"))
            assert loss_b.split()[-1] == short(last_b)
            # B's dev row lined up with the columns too: from its first evaluations to its last, then blank
            front = app.monitor.sparklines._view
            assert len(behind.scores) == len(front.first_steps)
            scored = [score for score in behind.scores if score is not None]
            assert scored[0] < scored[-1] == app.runs.states[1].evals[-1][1].accuracy
            assert behind.scores[-1] is None  # run B ended at step 80, the front at 120
            await pilot.press("w", "home", *["right"] * 9)
            await _until(pilot, lambda: "step 10/120" in _header(app))
            await pilot.press("o")  # B to the front: drawn in full, the cursor stays at step 10
            await _until(pilot, lambda: "▶━B" in _header(app))
            assert "step 10/80" in _header(app) and "clip ON max_norm=1" in _header(app)
            assert "loss A" in _sparklines(app)
            await pilot.press("v")  # the charts draw every run too
            await _until(pilot, lambda: "total A" in str(app.monitor.charts.query_one("#chart-legend").render()))

    asyncio.run(run())


def test_one_log_is_drawn_as_before(tmp_path):
    log = _log(tmp_path / "a.jsonl", 30)

    async def run():
        app = build_app(LogFilesSource([log]))
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end", "o")
            await _until(pilot, lambda: "step 30/30" in _header(app))
            assert "━A" not in _header(app) and "loss B" not in _sparklines(app)

    asyncio.run(run())


def test_a_run_behind_is_aligned_by_step_and_blank_where_it_has_none():
    runs = RunSet()
    runs.ingest(list(synthetic_events(20, seed=0)))
    late = [event for event in synthetic_events(20, seed=1) if event.step == 0 or event.step > 10]
    for event in late:
        object.__setattr__(event, "run", "late")
    runs.ingest(late)
    assert len(runs.states) == 2
    (overlay,) = runs.overlays(list(range(6, 21)), 20, None)
    assert overlay.loss[:5] == [None] * 5  # steps 6..10: the late run has none
    assert all(value is not None for value in overlay.loss[5:])
    assert runs.position(runs.states[1], 14) == 4  # cursor at step 15 of the longer run: its 5th step


def test_a_key_pressed_while_a_long_log_is_read_is_answered_between_two_slices(tmp_path, monkeypatch):
    import tui.app
    from textual.events import Key

    log = _log(tmp_path / "long.jsonl", 3000)
    monkeypatch.setattr(tui.app, "INGEST_SLICE", 0.0)  # one chunk of events a slice

    async def run():
        app = build_app(LogFilesSource([log]))
        seen_when_handled = []
        original = app.action_pause

        def pause() -> None:
            seen_when_handled.append(app.state.events_seen)
            original()

        app.action_pause = pause
        async with app.run_test(size=SIZE) as pilot:
            # a batch of a thousand events is being taken in (the second: the screen has been composed)
            while app.state.events_seen <= 1000:
                await asyncio.sleep(0)
            seen_when_pressed = app.state.events_seen
            assert app.state.steps[-1] < 3000  # still reading
            app.post_message(Key("p", "p"))
            await _until(pilot, lambda: seen_when_handled)
            # answered after at most two slices, not after the thousand events of the batch
            assert seen_when_handled[0] - seen_when_pressed <= 2 * tui.app.INGEST_CHUNK
            await _until(pilot, lambda: app.ended is not None)
            assert app.state.steps[-1] == 3000  # the end is said once every event is in

    asyncio.run(run())


def test_the_overlay_benchmark_measures_one_log_and_two(tmp_path):
    from tui.bench import measure_overlay

    one = _log(tmp_path / "a.jsonl", 200)
    two = _log(tmp_path / "b.jsonl", 150, clip=1.0, seed=1)
    single = measure_overlay([one], presses=4)
    assert single["steps"] == [200] and single["key_presses"] == 4 and single["first_frame_s"] > 0
    both = measure_overlay([one, two], presses=4)
    assert both["steps"] == [200, 150] and both["key_presses"] == 4


def test_two_runs_at_80x24_keep_the_recurrent_matrix_row_beside_the_alarmed_one(tmp_path):
    """Overlaid runs leave room for one norm row of the front run: the recurrent matrix U, the
    gradient's path back in time, is that row even when the alarm named W."""
    first, second = _log(tmp_path / "a.jsonl", 40), _log(tmp_path / "b.jsonl", 40, clip=1.0, seed=1)

    async def run():
        app = build_app(LogFilesSource([first, second]))
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.ended is not None)
            await pilot.press("end")
            await _until(pilot, lambda: "step 40 · finished" in _header(app))
            rows = [line.split()[0] for line in _sparklines(app).splitlines() if line.strip()]
            assert "‖∇U‖" in rows, rows
            assert "step 3: ‖∇W‖" in str(app.monitor.timeline.render())  # the alarm named another

    asyncio.run(run())
