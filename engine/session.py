"""One training session with its plumbing: the run log, the event sinks, signals, commands.

Used by the headless CLI, by the child process that the TUI starts, and by sweep workers.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from typing import IO, Callable

from . import events as ev
from .config import TrainConfig
from .runner import Runner, new_run_id
from .stream import CommandReader, EventWriter


def log_path_for(config: TrainConfig) -> str:
    return os.path.join(config.runs_dir, f"{config.run_id}.jsonl")


def run_session(config: TrainConfig, *, events_path: str | None = None, stream: IO[str] | None = None,
                callbacks: list[Callable[[ev.Event], None]] | None = None,
                command_stream: IO[str] | None = None) -> tuple[str, str]:
    """Train one run; returns (reason, log path). reason: finished | stopped | failed.

    Events always go to the run log (``events_path`` or runs/<run-id>.jsonl), and also to ``stream``
    and ``callbacks`` when given. SIGINT and SIGTERM stop the run at the next step boundary, write
    the last checkpoint and flush the log; a second SIGINT interrupts at once (the log is still
    flushed).
    """
    from . import checkpoint as ckpt

    if not config.run_id:
        config = replace(config, run_id=new_run_id(config))
    log_path = events_path or log_path_for(config)
    resume = ckpt.load(config.resume) if config.resume else None
    writer = EventWriter(log_path, stream=stream, callbacks=callbacks)
    runner = None
    previous = {}

    def stop(signum, frame):
        if runner is not None and not runner.stop_requested:
            runner.request_stop()
        else:
            raise KeyboardInterrupt

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, stop)
    except ValueError:  # not the main thread: the caller handles signals
        previous = {}
    try:
        commands = None
        if command_stream is not None:
            def malformed(message: str) -> None:
                writer.emit(ev.Notice(run=config.run_id, level="error", message=message))

            commands = CommandReader(command_stream, on_error=malformed)
        runner = Runner(config, writer.emit, commands, resume=resume, emit_steps=writer.emit_steps)
        reason = runner.run()
    except KeyboardInterrupt:
        if runner is not None:
            runner._save_last()
            runner.emit(ev.Status, state="stopped", message="interrupted")
            runner.emit(ev.RunFinished, reason="stopped", best_dev=runner.best_score)
        reason = "stopped"
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        if runner is None:  # failed before the first event: still leave a readable log
            writer.emit(ev.Status(run=config.run_id, state="failed", message=message))
        writer.close()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        writer.close()
    return reason, log_path


def child_main(argv: list[str] | None = None) -> int:
    """``python -m engine.child CONFIG_JSON``: events on stdout, commands on stdin, errors on stderr."""
    import json

    from .config import ConfigError, validate

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.child CONFIG_JSON", file=sys.stderr)
        return 2
    try:
        config = TrainConfig.from_dict(json.loads(argv[0]))
        validate(config)
    except (ValueError, TypeError) as error:
        message = str(error) if isinstance(error, ConfigError) else f"bad config: {error}"
        print(ev.Status(state="failed", message=message).to_json(), flush=True)
        print(f"rnnlab-tui: {message}", file=sys.stderr)
        return 2
    stdout = sys.stdout
    sys.stdout = sys.stderr  # nothing but events may reach the event stream
    try:
        reason, _ = run_session(config, stream=stdout, command_stream=sys.stdin)
    except Exception as error:
        from .errors import describe

        message = describe(error)
        try:
            stdout.write(ev.Status(run=config.run_id, state="failed", message=message).to_json() + "\n")
            stdout.flush()
        except OSError:
            pass
        print(f"rnnlab-tui: {message}", file=sys.stderr)
        return 1 if not isinstance(error, ValueError) else 2
    return 0
