"""The rescue preset's arms, trained as the TUI trains them: the engine in a child process, pausing itself
after the step of its first explosion, then answered (clipping at a threshold, a rewind, continue). Same seed for every arm.

    python tests/tui/rescue_arms.py          # every arm: none, the advisor's threshold, max_norm 1
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from engine.config import build_config  # noqa: E402
from engine.events import Alarm, Eval, Resume, Rewind, RunFinished, SetClip, Stop, from_json  # noqa: E402
from tui.state import RunState  # noqa: E402


def run_arm(threshold: str, folder: str, rewind: bool = True) -> tuple[float, dict]:
    """Test accuracy of the rescue run answered at its explosion: ``threshold`` is "none" (keep going),
    "advice" (the advisor's max_norm, as the a key sends it) or a number; and what happened."""
    config = build_config("rescue", runs_dir=folder, checkpoint_dir=folder, pause_on_alarm=True)
    child = subprocess.Popen([sys.executable, "-m", "engine.child", json.dumps(config.to_dict())], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    state, story, accuracy = RunState(), {}, float("nan")

    def send(command) -> None:
        child.stdin.write(command.to_json() + "\n")
        child.stdin.flush()

    for line in child.stdout:
        event = from_json(line)
        state.ingest([event])
        if isinstance(event, Alarm) and event.kind == "explosion" and not story:
            advice = state.advisor.at(state.last_index)
            story = {"explosion": event.step, "advice": advice.suggestion}
            if threshold != "none":  # none: p, continue without
                story["max_norm"] = advice.suggestion if threshold == "advice" else float(threshold)
                send(SetClip(on=True, max_norm=story["max_norm"], norm_type=config.clip_type))
                if rewind:
                    send(Rewind())
            send(Resume())
        elif isinstance(event, Eval) and event.split == "test":
            accuracy = event.accuracy
        elif isinstance(event, RunFinished):
            send(Stop())
            break
    child.wait(timeout=60)
    return accuracy, story


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for arm in ("none", "advice", "1"):
            accuracy, story = run_arm(arm, folder)
            print(f"{arm:>6}: test accuracy {accuracy:.2f} {story}")
