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


if __name__ == "__main__":
    import json

    print(json.dumps(measure_ingest(), indent=2))
