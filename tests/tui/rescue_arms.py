"""The rescue preset's arms, trained as the TUI trains them: the engine in a child process, pausing itself
after the step of its first explosion, then answered (clipping at a threshold, a rewind, continue). Same
seed for every arm.

    python tests/tui/rescue_arms.py          # both arms: none, and the advisor's threshold
    python tests/tui/rescue_arms.py 1 5      # and any thresholds given
    python tests/tui/rescue_arms.py --preset explode --length 5 1    # another preset's arms
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from engine.config import build_config  # noqa: E402
from engine.commands import Resume, Rewind, SetClip, Stop  # noqa
from engine.events import Alarm, Eval, RunFinished, Status, Step, from_json  # noqa
from tui.state import RunState  # noqa: E402


class RescueRun:
    """The rescue preset in a child process as the TUI starts it (pausing at its first explosion), with
    the TUI's state (and so its clipping advisor) fed from its events."""

    def __init__(self, folder: str, preset: str = "rescue", **overrides):
        self.config = build_config(preset, runs_dir=folder, checkpoint_dir=folder, pause_on_alarm=True, **overrides)
        self.child = subprocess.Popen([sys.executable, "-m", "engine.child", json.dumps(self.config.to_dict())],
                                      cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.state = RunState()
        self.steps: list[Step] = []  # every step so far, as the engine sent it

    def events(self):
        for line in self.child.stdout:
            event = from_json(line)
            self.state.ingest([event])
            if isinstance(event, Step):
                self.steps.append(event)
            yield event

    def send(self, command) -> None:
        self.child.stdin.write(command.to_json() + "\n")
        self.child.stdin.flush()

    def until_paused_at_explosion(self) -> Alarm:
        """The first explosion's alarm, once the run has paused after its step."""
        explosion = None
        for event in self.events():
            if isinstance(event, Alarm) and event.kind == "explosion" and explosion is None:
                explosion = event
            elif isinstance(event, Status) and event.state == "paused" and explosion is not None:
                return explosion
            elif isinstance(event, RunFinished):
                raise AssertionError("the run finished without pausing at an explosion")
        raise AssertionError("the engine ended without pausing at an explosion")

    def close(self) -> None:
        if self.child.poll() is None:
            self.send(Stop())
        self.child.wait(timeout=60)
        self.child.stdin.close()
        self.child.stdout.close()


def run_arm(threshold: str, folder: str, rewind: bool = True, preset: str = "rescue", **overrides) -> tuple[float, dict]:
    """Test accuracy of the rescue run answered at its explosion: ``threshold`` is "none" (p, keep going),
    "advice" (the advisor's max_norm, as the a key sends it) or a number; and what happened."""
    run = RescueRun(folder, preset, **overrides)
    try:
        explosion = run.until_paused_at_explosion()
        advice = run.state.advisor.at(run.state.last_index)
        story = {"explosion": explosion.step, "advice": advice.suggestion, "healthy": advice.healthy}
        if threshold != "none":
            story["max_norm"] = advice.suggestion if threshold == "advice" else float(threshold)
            run.send(SetClip(on=True, max_norm=story["max_norm"], norm_type=run.config.clip_type))
            if rewind:
                run.send(Rewind())
        run.send(Resume())
        accuracy = float("nan")
        for event in run.events():
            if isinstance(event, Eval) and event.split == "test":
                accuracy = event.accuracy
            elif isinstance(event, RunFinished):
                break
    finally:
        run.close()
    return accuracy, story


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="the arms of a preset paused at its first explosion")
    parser.add_argument("thresholds", nargs="*", help="max_norms to try besides none and the advisor's")
    parser.add_argument("--preset", default="rescue")
    parser.add_argument("--length", type=int, help="the digit sequences' length (default: the preset's)")
    args = parser.parse_args()
    overrides = {"length": args.length} if args.length else {}
    with tempfile.TemporaryDirectory() as folder:
        for arm in ("none", "advice", *args.thresholds):
            accuracy, story = run_arm(arm, folder, preset=args.preset, **overrides)
            print(f"{arm:>6}: test accuracy {accuracy:.2f} {story}", flush=True)
