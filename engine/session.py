"""One training session with its plumbing: the run log, the event sinks, signals, commands.

Used by the headless CLI, by the child process that the TUI starts, and by sweep workers.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import sys
import threading
from dataclasses import replace
from typing import IO, Callable

from . import checkpoint as ckpt
from . import commands as cmd
from . import events as ev
from .afterrun import answer_after_run
from .config import ConfigError, TrainConfig, new_run_id
from .fork import check_fork_step
from .logs import branch_log_path
from .preflight import create_exclusively
from .runner import Runner
from .stream import CommandReader, EventWriter
from .text import visible


def configure_torch(threads: int = 1) -> None:
    """Process-wide settings, made once where a training process starts (the CLI, the TUI's child, a
    sweep worker).

    These networks are small: a second intra-op thread gains little, and when the other core is busy
    (a TUI, a second run) its barrier waits make every step many times slower. After an explosion the
    saturated network's gradients are denormal floats, which the CPU handles some 20x slower;
    flushing them to zero changes nothing a norm can show."""
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def log_path_for(config: TrainConfig) -> str:
    return os.path.join(config.runs_dir, f"{config.run_id}.jsonl")


def compress_log(path: str) -> str:
    """Replace a finished log by its gzip file, ``path + ".gz"``; return the path that now holds the log.

    A log is plain JSON lines while its run writes it, so it can be followed; once closed it shrinks
    about ten times. The .gz is written under a temporary name, fsynced and renamed before the plain
    log is removed, so at every moment one complete log is on disk; if compressing fails (a full
    disk), the plain log stays.
    """
    target = path + ".gz"
    if os.path.exists(target):  # never replaced: this log stays plain beside it
        return path
    temporary = f"{target}.tmp-{os.getpid()}"
    try:
        with open(path, "rb") as plain, open(temporary, "wb") as raw:
            # level 6 (zlib's default): a 20 MB log in about a second; level 9 saves 3% in twice the time
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as packed:
                shutil.copyfileobj(plain, packed, 1 << 20)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, target)
        from .checkpoint import fsync_folder

        fsync_folder(os.path.dirname(os.path.abspath(target)))
    except BaseException as error:  # a full disk, or Ctrl-C while compressing: the plain log stays
        try:
            os.unlink(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            return path
        raise
    os.unlink(path)
    return target


class _SharedStream:
    """One stream written by two event writers (the branches of a fork): a line at a time."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            self.stream.write(line)

    def flush(self) -> None:
        with self.lock:
            self.stream.flush()


def run_session(config: TrainConfig, *, events_path: str | None = None, stream: IO[str] | None = None,
                callbacks: list[Callable[[ev.Event], None]] | None = None,
                command_stream: IO[str] | None = None, fork_at: tuple[int, cmd.Fork] | None = None) -> tuple[str, str]:
    """Train one run; returns (reason, log path). reason: finished | stopped | failed.

    Events always go to the run log, and also to ``stream`` and ``callbacks`` when given. The run's own
    log, runs/<run-id>.jsonl, is compressed to runs/<run-id>.jsonl.gz when the run ends, however it ends
    (a log at a path the caller chose, ``events_path``, stays as written). SIGINT and SIGTERM stop the run
    at the next step boundary; a second SIGINT interrupts at once. A fork's second branch logs beside it.
    """
    if not config.run_id:
        config = replace(config, run_id=new_run_id(config))
    log_path = events_path or log_path_for(config)
    resume = ckpt.load(config.resume) if config.resume else None
    check_fork_step(config, fork_at, int(resume.get("step", 0)) if resume else 0)
    new_folder = _create_log(log_path)
    branches = _BranchLogs(log_path, stream)
    writer = EventWriter(log_path, stream=branches.stream, callbacks=callbacks)
    finished = []  # the RunFinished the run wrote, if it got that far

    def emit(event: ev.Event) -> None:
        if type(event) is ev.RunFinished:
            finished.append(event)
        writer.emit(event)

    runner = None

    def stop(signum, frame):
        if runner is not None and not runner.stop_requested:
            runner.request_stop()
        else:
            raise KeyboardInterrupt

    previous = _handle_signals(stop)
    refused = False  # the task's data cannot serve the config (a sequence longer than the text): no run
    try:
        commands = None if command_stream is None else _command_reader(command_stream, writer, config.run_id)
        runner = Runner(config, emit, commands, resume=resume, log_error=lambda: writer.error or branches.error())
        reason = _train(runner, branches, fork_at, commands)
    except KeyboardInterrupt:
        if runner is not None:
            runner.end_interrupted()  # and its fork's second branch, if any (engine/fork.py)
        reason = "stopped"
    except Exception as error:
        refused = _end_failed_log(writer, config, runner, bool(finished), error)
        raise
    finally:
        writer.close()
        try:
            branches.close(compress=events_path is None)
            if refused:
                _remove_refused_log(log_path, new_folder)
            elif events_path is None:
                # under this run's handlers: a first Ctrl-C lets compression finish, a second
                # abandons it and leaves the plain log
                log_path = compress_log(log_path)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return reason, log_path


def _create_log(log_path: str) -> bool:
    """A new empty log file (True when its folder had to be made too): an existing log, or anything
    else, is never truncated, and of two runs given the same path the second is refused."""
    new_folder = not os.path.isdir(os.path.dirname(os.path.abspath(log_path)))
    create_exclusively(log_path)
    return new_folder


def _remove_refused_log(log_path: str, new_folder: bool) -> None:
    """The log of a run refused before its first event, made by it a moment ago and empty (and its
    folder, when the run made that too): a run that never started leaves nothing behind."""
    os.unlink(log_path)
    if new_folder:
        os.rmdir(os.path.dirname(os.path.abspath(log_path)))


def _train(runner: Runner, branches: "_BranchLogs", fork_at, commands: CommandReader | None) -> str:
    """The run (forking if asked); then, if it finished and someone steers it, the console's answers
    until they say stop (engine/afterrun.py). The run's reason."""
    reason = branches.attach(runner, fork_at).run()
    answer_after_run(runner, commands, reason)
    return reason


class _BranchLogs:
    """The log of a fork's second branch, opened beside the run's own when the run forks."""

    def __init__(self, log_path: str, stream: IO[str] | None):
        self.log_path = log_path
        self.stream = _SharedStream(stream) if stream is not None else None  # both branches write to it
        self.writers: list[EventWriter] = []

    def attach(self, runner: Runner, fork_at: tuple[int, cmd.Fork] | None) -> Runner:
        """``runner``, able to fork (a command), and forking at a step if asked (``train --fork-at``)."""
        runner.open_branch_writer = self.open
        if fork_at is not None:
            from .fork import ForkAt

            runner.commands = ForkAt(runner.commands, fork_at[0], fork_at[1], lambda: runner.step)
        return runner

    def open(self, run_id: str) -> EventWriter:
        path = branch_log_path(self.log_path)
        create_exclusively(path)
        self.writers.append(EventWriter(path, stream=self.stream))
        return self.writers[-1]

    def error(self) -> str:
        return next((writer.error for writer in self.writers if writer.error), "")

    def close(self, compress: bool) -> None:
        for writer in self.writers:
            writer.close()
            if compress:
                compress_log(writer.log_path)


def _handle_signals(handler) -> dict:
    """SIGINT and SIGTERM to ``handler``; the handlers they had (none when not the main thread, where
    the caller handles signals)."""
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        return {}
    return previous


def _command_reader(stream: IO[str], writer: EventWriter, run_id: str) -> CommandReader:
    def malformed(message: str) -> None:
        writer.emit(ev.Notice(run=run_id, level="error", message=message))

    return CommandReader(stream, on_error=malformed)


def _end_failed_log(writer: EventWriter, config: TrainConfig, runner: Runner | None, finished: bool,
                    error: Exception) -> bool:
    """The last events of a run that raised ``error``, so its log still reads as a run that ended; True
    when the run was refused instead (a config its data cannot serve), which leaves no log."""
    if runner is None and isinstance(error, ConfigError):
        return True
    if runner is None:  # failed before the first event: still leave a readable log
        writer.emit(ev.Status(run=config.run_id, state="failed", message=f"{type(error).__name__}: {error}"))
    elif not finished:  # failed on its way out (a checkpoint on a full disk)
        runner.emit(ev.RunFinished, reason="failed", best_dev=runner.best_score)
    writer.close()
    return False


def child_main(argv: list[str] | None = None) -> int:
    """``python -m engine.child CONFIG_JSON``: events on stdout, commands on stdin, errors on stderr."""
    import json

    from .config import ConfigError, validate

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        print("usage: python -m engine.child CONFIG_JSON [EVENTS_PATH]", file=sys.stderr)
        return 2
    events_path = argv[1] if len(argv) == 2 else None
    try:
        config = TrainConfig.from_dict(json.loads(argv[0]))
        validate(config)
    except (ValueError, TypeError) as error:
        message = str(error) if isinstance(error, ConfigError) else f"bad config: {error}"
        print(ev.Status(state="failed", message=message).to_json(), flush=True)
        print(f"rnnlab-tui: {visible(message)}", file=sys.stderr)
        return 2
    configure_torch()
    stdout = sys.stdout
    sys.stdout = sys.stderr  # nothing but events may reach the event stream
    try:
        reason, _ = run_session(config, events_path=events_path, stream=stdout, command_stream=sys.stdin)
    except Exception as error:
        from .errors import describe

        message = describe(error)
        try:
            stdout.write(ev.Status(run=config.run_id, state="failed", message=message).to_json() + "\n")
            stdout.flush()
        except OSError:
            pass
        print(f"rnnlab-tui: {visible(message)}", file=sys.stderr)
        return 1 if not isinstance(error, ValueError) else 2
    return 0
