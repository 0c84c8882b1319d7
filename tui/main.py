"""Entry points the CLI calls: train live in a child process, or watch a log or a stream."""

from __future__ import annotations

import json
import os
import shlex
import sys

from engine.logs import branch_log_path, existing_log, log_problem
from engine.text import visible
from tui.format import short
from tui.sources import ChildProcessSource, EventSource, LogFileSource, LogFilesSource, StdinSource


def train_live(config: dict, events_path: str | None = None) -> int:
    """Train ``config`` (a TrainConfig dict) in a child process and watch it; the exit code.

    When the engine dies (killed, crashed) the app says so and stays open; once it closes, one line
    on stderr says why, and the exit code is 1 (2 if the engine refused the run)."""
    source = train_source(config, events_path)
    if source.start_error:
        print(f"rnnlab-tui: {visible(source.start_error)}", file=sys.stderr)
        return 2
    code, app = _run(source)
    source.terminate()  # a no-op after a clean stop; otherwise the child must not outlive the app
    for line in told_at_exit(app.runs.states, run_logs(app.runs.states, events_path)):
        print(visible(line))
    if app.failure:
        print(f"rnnlab-tui: {visible(app.failure)}", file=sys.stderr)
        return 2 if source.exit_code == 2 else 1
    return code


def told_at_exit(states, logs: list[str]) -> list[str]:
    """What is printed once the app has closed: how each run ended (a fork has two) and its last
    checkpoint; for a stopped one, the command that resumes it; then the command that replays the
    runs' ``logs`` (a fork's two overlaid)."""
    lines = []
    for finished in (state.finished for state in states):
        if finished is None or not finished.checkpoint:
            continue
        if finished.reason == "stopped":
            lines += [f"stopped at step {finished.step}; last checkpoint {finished.checkpoint}",
                      f"resume with: rnnlab-tui train --resume {finished.checkpoint}"]
        elif finished.reason == "finished":  # with its scores, which the screen showed and the log keeps
            scores = [f"{name} {short(value)}" for name, value in (
                ("best dev", finished.best_dev), ("test accuracy", finished.test_accuracy),
                ("test perplexity", finished.test_perplexity)) if value is not None]
            lines.append(f"finished at step {finished.step}" + "".join(f", {score}" for score in scores)
                         + f"; last checkpoint {finished.checkpoint}")
    if lines and logs:  # a run that ended as asked (a fault is told in one line, on stderr)
        lines.append(f"replay with: rnnlab-tui watch {' '.join(shlex.quote(path) for path in logs)}")
    return lines


def run_logs(states, events_path: str | None) -> list[str]:
    """Where the runs' logs are now: the first run's (compressed once its run ended, unless the user
    chose its path), then a fork's second branch's beside it."""
    if not states or states[0].started is None:
        return []
    first = events_path or os.path.join(states[0].config.get("runs_dir", "runs"), f"{states[0].started.run}.jsonl")
    paths = [first, branch_log_path(first)][: len(states)]
    return [found for found in map(existing_log, paths) if found]


def train_source(config: dict, events_path: str | None = None) -> ChildProcessSource:
    """The engine training ``config`` in a child process, started."""
    argv = [sys.executable, "-m", "engine.child", json.dumps(config)] + ([events_path] if events_path else [])
    # Start the engine first: its torch import (seconds) overlaps with the app's own start.
    # The child runs in the user's directory (runs/ and checkpoints/ are relative to it) and finds
    # the engine package beside tui/ even when the project is not installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_repository_root(), env.get("PYTHONPATH", "")]))
    return ChildProcessSource(argv, env=env).start()


def watch(paths: list[str] | str) -> int:
    """Replay recorded logs (several are overlaid), or follow a stream on standard input ("-")."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if paths == ["-"]:
        source = _stdin_source()
        if source is None:
            return 2
        return _run(source)[0]
    for path in paths:
        problem = log_problem(path)
        if problem:
            print(f"rnnlab-tui: {visible(problem)}", file=sys.stderr)
            return 2
    return _run(LogFileSource(paths[0]) if len(paths) == 1 else LogFilesSource(paths))[0]


def _run(source: EventSource):
    """The app's exit code, and the app (what it learnt of the run)."""
    from tui.app import build_app  # textual loads only now, after the child has started

    app = build_app(source)
    result = app.run()
    return (int(app.return_code or 0) if result is None else int(result)), app


def _stdin_source() -> StdinSource | None:
    """Move the piped stream off file descriptor 0 and put the terminal there for the keyboard.

    Textual's driver reads keys from standard input (fd 0). With ``cat log | rnnlab-tui watch -``
    fd 0 is the pipe, so the stream gets a duplicate descriptor of its own and fd 0 is reopened on
    the controlling terminal, /dev/tty.
    """
    if os.isatty(0):
        print("rnnlab-tui: watch - reads events from standard input; pipe a stream in "
              "(e.g. ssh host rnnlab-tui train --headless --events - | rnnlab-tui watch -)", file=sys.stderr)
        return None
    stream_fd = os.dup(0)
    try:
        terminal = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        os.close(stream_fd)
        print("rnnlab-tui: watch - needs a terminal for the keyboard (/dev/tty cannot be opened)", file=sys.stderr)
        return None
    os.dup2(terminal, 0)
    os.close(terminal)
    return StdinSource(stream_fd)


def _repository_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
