"""How fast the monitor takes in a run, and how quickly it answers keys meanwhile.

``measure_ingest`` writes a synthetic 100,000-step log, replays it through the real app (headless,
under ``run_test``) as fast as the app can take it, and presses a key every few milliseconds while
it does. It reports figures; it asserts nothing (``rnnlab-tui bench`` prints them).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time

from textual.events import Key

from tui.runs import run_letter
from tui.synthetic import synthetic_events, write_log

KEY_INTERVAL = 0.02  # seconds between key presses during ingestion
TIME_LIMIT = 120.0  # give up (and report what was reached) after this long


def measure_ingest(n_steps: int = 100_000) -> dict:
    """Events/s through the real app, and the slowest key press during ingestion (ms)."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as folder:
        path = os.path.join(folder, "bench.jsonl")
        events = write_log(path, synthetic_events(n_steps, cell="srn", steps_per_epoch=250))
        return asyncio.run(_replay(path, events))


async def _replay(path: str, events: int) -> dict:
    from tui.app import build_app
    from tui.sources import LogFileSource

    app = build_app(LogFileSource(path))
    handled: list[float] = []
    original = app.action_pause

    def timed_pause() -> None:  # the key under test: it records when the app got to it
        handled.append(time.perf_counter())
        original()

    app.action_pause = timed_pause  # type: ignore[method-assign]
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        start, cpu_start = time.perf_counter(), time.process_time()
        while app.ended is None and time.perf_counter() - start < TIME_LIMIT:
            pressed = time.perf_counter()
            count = len(handled)
            app.post_message(Key("p", "p"))  # as a terminal would: no waiting for idle
            while len(handled) == count and time.perf_counter() - pressed < 5.0:
                await asyncio.sleep(0.0005)
            if len(handled) > count:
                latencies.append((handled[-1] - pressed) * 1000.0)
            await asyncio.sleep(KEY_INTERVAL)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start  # all threads: a figure that a busy machine skews less
        seen = app.state.events_seen
        await pilot.press("q")
    return {
        "events": float(seen),
        "events_in_log": float(events),
        "seconds": float(elapsed),
        "ingest_events_per_s": float(seen / elapsed) if elapsed > 0 else 0.0,
        "ingest_events_per_cpu_s": float(seen / cpu) if cpu > 0 else 0.0,
        "key_latency_ms_max": float(max(latencies)) if latencies else 0.0,
        "key_latency_ms_median": float(sorted(latencies)[len(latencies) // 2]) if latencies else 0.0,
        "key_presses": float(len(latencies)),
    }


def measure_step_latency(seconds: float = 10.0, speed: float = 20.0, flow: bool = False) -> dict:
    """How long after its step a step's numbers are on screen, for a real run at ``speed`` steps/s;
    with ``flow``, its gradient flow in the flow view (``t``) instead.

    The engine runs in a child process, as under ``train``. Two parts, in milliseconds: on the pipe,
    each event's arrival minus its ``t`` (the engine's clock), less the smallest such difference (so
    the best-delivered step counts 0: a lower bound of the writer's delay); in the app, from the
    reader getting the line to the end of the frame that draws it.
    """
    return asyncio.run(_live(seconds, speed, flow))


async def _live(seconds: float, speed: float, flow: bool) -> dict:
    import json
    import sys

    from engine.config import build_config
    from engine.events import Flow, Step
    from tui.app import build_app
    from tui.sources import ChildProcessSource

    config = build_config("explode", speed=speed, epochs=1000, runs_dir=tempfile.mkdtemp(),
                          checkpoint_dir=tempfile.mkdtemp(), pause_on_alarm=False)
    source = ChildProcessSource([sys.executable, "-m", "engine.child", json.dumps(config.to_dict())]).start()
    timed = Flow if flow else Step
    arrived: dict[int, float] = {}  # step -> when the reader had its event
    offsets: dict[int, float] = {}  # step -> arrival minus the engine's t
    batches = source.batches

    def timed_batches():
        for batch in batches():
            now = time.perf_counter()
            for event in batch:
                if isinstance(event, timed):
                    arrived[event.step] = now
                    offsets[event.step] = now - event.t
            yield batch

    source.batches = timed_batches  # type: ignore[method-assign]
    app = build_app(source)
    drawn: dict[int, float] = {}
    widget = app.monitor.flow if flow else app.monitor

    def last_drawn() -> int:
        if flow:
            flows = app.monitor.flow._view.flows
            return flows[-1].step if flows else 0
        return app.state.steps[-1] if app.state.steps else 0

    draw_method = "render" if flow else "draw"
    draw = getattr(widget, draw_method)

    def timed_draw(*args, **kwargs):
        result = draw(*args, **kwargs)
        now, last = time.perf_counter(), last_drawn()
        for step in list(arrived):
            if step not in drawn and step <= last:
                drawn[step] = now
        return result

    setattr(widget, draw_method, timed_draw)
    async with app.run_test(size=(120, 40)) as pilot:
        if flow:
            await pilot.press("t")
        start = time.perf_counter()
        while time.perf_counter() - start < seconds + 30 and len(drawn) < seconds * speed:
            await asyncio.sleep(0.05)
        await pilot.press("q")
    source.terminate()
    return {"events": timed.type, **_latencies(arrived, offsets, drawn)}


def _latencies(arrived: dict[int, float], offsets: dict[int, float], drawn: dict[int, float]) -> dict:
    """Milliseconds on the pipe (less the best-delivered step's), in the app, and both, per step drawn."""
    steps = sorted(step for step in drawn if step in offsets)[5:]  # the first steps wait for torch to warm up
    base = min(offsets[step] for step in steps)
    pipe = sorted((offsets[step] - base) * 1000 for step in steps)
    screen = sorted((drawn[step] - arrived[step]) * 1000 for step in steps)
    total = sorted((offsets[step] - base + drawn[step] - arrived[step]) * 1000 for step in steps)
    return {"steps": len(steps), "pipe_ms_median": pipe[len(pipe) // 2], "pipe_ms_max": pipe[-1],
            "app_ms_median": screen[len(screen) // 2], "app_ms_max": screen[-1],
            "total_ms_median": total[len(total) // 2], "total_ms_p95": total[int(len(total) * 0.95)],
            "total_ms_max": total[-1]}


def measure_overlay(paths: list[str], presses: int = 40) -> dict:
    """Several logs overlaid: seconds to the first frame that shows every run, seconds until all is
    read, and how fast keys are answered (o: another run to the front; ← and →: scrubbing), in ms."""
    return asyncio.run(_overlay(paths, presses))


async def _overlay(paths: list[str], presses: int) -> dict:
    from tui.app import build_app
    from tui.sources import LogFilesSource

    start = time.perf_counter()
    app = build_app(LogFilesSource(paths))
    handled: list[float] = []
    for name in ("action_front", "action_seek"):
        original = getattr(app, name)

        def timed(*args, original=original) -> None:
            handled.append(time.perf_counter())
            original(*args)

        setattr(app, name, timed)
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        header = app.monitor.run_header
        while not _shows_every_run(str(header.render()), len(paths)):
            if time.perf_counter() - start > TIME_LIMIT:
                raise RuntimeError(f"no frame showed the {len(paths)} runs within {TIME_LIMIT:g} s")
            await asyncio.sleep(0.005)
        first_frame = time.perf_counter() - start
        keys = [("o", "o")] * (len(paths) > 1) + [("left", None), ("right", None), ("end", None)]  # o: 2 runs
        for press in range(presses):
            key, character = keys[press % len(keys)]
            count, pressed = len(handled), time.perf_counter()
            app.post_message(Key(key, character))
            while len(handled) == count and time.perf_counter() - pressed < 5.0:
                await asyncio.sleep(0.0005)
            if len(handled) > count:
                latencies.append((handled[-1] - pressed) * 1000.0)
            await asyncio.sleep(KEY_INTERVAL)
        while app.ended is None and time.perf_counter() - start < TIME_LIMIT:
            await asyncio.sleep(0.01)
        loaded = time.perf_counter() - start
        steps = [len(state.steps) for state in app.runs.states]
        await pilot.press("q")
    return {"first_frame_s": first_frame, "all_read_s": loaded, "steps": steps,
            "key_latency_ms_max": max(latencies, default=0.0),
            "key_latency_ms_median": sorted(latencies)[len(latencies) // 2] if latencies else 0.0,
            "key_presses": len(latencies)}


def _shows_every_run(header: str, runs: int) -> bool:
    """Whether the header drawn last shows every run: one line a run (each with its letter) when
    several are overlaid, the run's own lines when there is one."""
    if runs > 1:
        return f"━{run_letter(runs - 1)} " in header
    return " step " in header and not header.lstrip().startswith("waiting")


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:2] == ["overlay"]:  # python -m tui.bench overlay A.jsonl.gz B.jsonl.gz
        if not sys.argv[2:]:
            sys.exit("usage: python -m tui.bench overlay LOG [LOG ...]")
        print(json.dumps(measure_overlay(sys.argv[2:]), indent=2))
    elif sys.argv[1:2] == ["latency"]:  # python -m tui.bench latency [--flow]
        print(json.dumps(measure_step_latency(flow="--flow" in sys.argv[2:]), indent=2))
    else:
        print(json.dumps(measure_ingest(), indent=2))
