"""The ``rnnlab-tui`` command. Parsing imports neither torch nor textual, so ``--help`` is instant;
each subcommand imports what it needs when it runs."""

from __future__ import annotations

import argparse
import os
import sys

from engine.config import (CELLS, CORPORA, HEADS, IMPLS, INITS, NORM_TYPES, OPTIMIZERS, PRESETS,
                           REDUCTIONS, SAMPLINGS, TASKS, ConfigError, build_config)
from engine.commands import Fork
from engine.logs import branch_log_path, existing_log
from engine.text import visible
from rnnlab_tui.common import EXIT_USAGE, fail, home_help, quiet_stdout, terminal_can_draw
from rnnlab_tui.files import add_file_commands

class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one clear line and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(EXIT_USAGE, visible(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")


def _fork_change(text: str) -> Fork:
    try:
        return Fork.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return value


def add_train_options(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("task and model")
    model.add_argument("--preset", choices=sorted(PRESETS), help="a source experiment: " + ", ".join(PRESETS))
    model.add_argument("--task", choices=TASKS, help="digits (NNDL 6.1 digit sum) or lm (character model)")
    model.add_argument("--cell", choices=CELLS, help="srn | lstm | gru (default srn)")
    model.add_argument("--impl", choices=IMPLS,
                       help="torch (default: fused kernels, textbook names), scratch (the equations) or "
                            "naive (the textbook's code as printed, one product per gate per step). For the "
                            "GRU, torch applies the reset gate after the recurrent product (r*(h U_h)); "
                            "scratch and naive follow d2l ((r*h) U_h)")
    model.add_argument("--head", choices=HEADS, help="classification over 19 sums or regression (MSE)")
    model.add_argument("--length", type=int, help="digit sequence length L: 5, 10, ..., 35 (default 20)")
    model.add_argument("--hidden", type=int, help="hidden units (default 32)")
    model.add_argument("--embed", type=int, help="embedding size (default 32; 0 = one-hot, lm task)")
    model.add_argument("--layers", type=int, help="recurrent layers, 1 or 2 (lm task)")
    model.add_argument("--bidirectional", action="store_true", default=None,
                       help="bidirectional layers (lm task; such a model cannot generate)")
    model.add_argument("--init", choices=INITS, help="auto (SRN zeros as the source, else xavier) | zeros | xavier | torch")
    model.add_argument("--corpus", choices=CORPORA, help="lm task: timemachine or tangshi300")
    model.add_argument("--seq-len", type=int, help="lm task: characters per subsequence (default 35)")
    model.add_argument("--sampling", choices=SAMPLINGS, help="lm task: sequential (state carried) or random")
    opt = parser.add_argument_group("optimisation (defaults: the explosion chapter, NNDL 6.2.2)")
    opt.add_argument("--lr", type=_positive_float, help="learning rate (default 0.2)")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, help="sgd (default) or adam")
    opt.add_argument("--loss-reduction", choices=REDUCTIONS, help="sum (default) or mean")
    opt.add_argument("--batch-size", type=int, help="default 64")
    opt.add_argument("--epochs", type=int, help="default 50")
    opt.add_argument("--shuffle", action="store_true", default=None, help="shuffle the training data each epoch")
    opt.add_argument("--clip", type=_positive_float, metavar="MAX_NORM", help="clip gradients to this norm")
    opt.add_argument("--clip-type", choices=NORM_TYPES, help="the norm clipping measures: 2 (default), 1, inf")
    opt.add_argument("--seed", type=int, help="seed of the weights and batches (default 5)")
    run = parser.add_argument_group("running")
    run.add_argument("--headless", action="store_true", help="no TUI: a progress bar and log lines")
    run.add_argument("--events", metavar="PATH", help="write the event log here ('-' = standard output)")
    run.add_argument("--progress", action="store_true",
                     help="with --events -: the progress bar and log lines on stderr (default: errors only)")
    run.add_argument("--eval-steps", type=int, help="evaluate every N steps (default: every epoch)")
    run.add_argument("--log-steps", type=int, help="a log line every N steps (headless)")
    run.add_argument("--speed", type=_positive_float, help="steps/s cap (0 = unlimited)")
    run.add_argument("--no-pause-on-alarm", dest="pause_on_alarm", action="store_false", default=None,
                     help="the TUI keeps training through the first explosion instead of pausing there")
    run.add_argument("--device", help="cpu (default), cuda, cuda:N or mps")
    run.add_argument("--runs-dir", metavar="DIR", help=f"where the run's log goes ({home_help('runs')})")
    run.add_argument("--checkpoint-dir", metavar="DIR",
                     help=f"where best and last checkpoints go ({home_help('checkpoints')})")
    run.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint")
    fork = parser.add_argument_group("fork (headless; in the TUI press f)")
    fork.add_argument("--fork-at", type=int, metavar="STEP",
                      help="after STEP steps, train a second branch beside the run, from the same weights, "
                           "optimiser state and batches; its log is the run's with -b")
    fork.add_argument("--fork", metavar="CHANGE", type=_fork_change,
                      help="what the second branch changes: clip=MAX_NORM, clip=none, max_norm=MAX_NORM or lr=LR")


TRAIN_FIELDS = ("preset", "task", "cell", "impl", "head", "length", "hidden", "embed", "layers", "bidirectional",
                "init", "corpus", "seq_len", "sampling", "lr", "optimizer", "loss_reduction", "batch_size",
                "epochs", "shuffle", "clip", "clip_type", "seed", "eval_steps", "log_steps", "speed", "device",
                "runs_dir", "checkpoint_dir", "pause_on_alarm")

# A run in the TUI is capped so the textbook's step-3 explosion can be watched; `+` and `-` change it.
TUI_DEFAULT_SPEED = 20.0


def build_train_config(args: argparse.Namespace, interactive: bool):
    """The run's config, checked as far as it can be before training starts (ValueError: one line)."""
    overrides = {name: getattr(args, name) for name in TRAIN_FIELDS if name != "preset"}
    if interactive and overrides["speed"] is None and not args.preset == "memory":
        overrides["speed"] = TUI_DEFAULT_SPEED
    if interactive and overrides["pause_on_alarm"] is None:
        overrides["pause_on_alarm"] = True  # digit runs only: the app pauses no language model
    if not interactive:  # nobody to answer a pause or to watch at a cap, as a resumed TUI run's config asks
        overrides["pause_on_alarm"] = False
        overrides["speed"] = overrides["speed"] or 0.0
    from engine import preflight

    if args.resume:
        if args.preset:
            raise ConfigError("--preset starts a fresh run; --resume continues the checkpoint's own settings")
        config, _ = preflight.resolve_resume(args.resume, overrides)
    else:
        config = build_config(args.preset or "", **overrides)
    preflight.check_run(config, None if args.events in (None, "-") else args.events)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    if (args.fork_at is None) != (args.fork is None):
        return fail("--fork-at STEP and --fork CHANGE go together, e.g. --fork-at 3 --fork clip=1")
    if args.fork_at is not None and args.fork_at < 1:
        return fail(f"--fork-at {args.fork_at}: the fork comes after a step, 1 or more")
    fork_at = None if args.fork is None else (args.fork_at, args.fork)
    # a fork at a given step trains headless: in the TUI, f forks the run at the step it is at
    interactive = (not args.headless and fork_at is None and args.events != "-" and terminal_can_draw()
                   and sys.stdin.isatty())
    try:
        config = build_train_config(args, interactive)
    except ValueError as error:  # ConfigError, CheckpointError
        return fail(str(error))
    if fork_at and args.fork.value == (config.lr if args.fork.setting == "lr" else config.clip):
        return fail(f"--fork {args.fork.setting}={'none' if args.fork.value is None else f'{args.fork.value:g}'}: "
                    "the run has that already, so its two branches would be the same run")
    if interactive:
        from tui.main import train_live

        return train_live(config.to_dict(), args.events)
    from engine.errors import USER_ERRORS, describe
    from engine.headless import HeadlessPrinter, branch_result_line
    from engine.session import configure_torch, run_session

    configure_torch()
    to_stdout = args.events == "-"
    # the events are the output: over ssh, anything on stderr lands on the viewer's terminal, so the
    # progress and log lines go there only when asked for; errors still do
    quiet = to_stdout and not args.progress
    printer = HeadlessPrinter(sys.stderr if to_stdout else sys.stdout, config.log_steps,
                              log_path=None if to_stdout else args.events)
    try:
        reason, log_path = run_session(config, events_path=None if to_stdout else args.events,
                                       stream=sys.stdout if to_stdout else None,
                                       callbacks=[] if quiet else [printer], fork_at=fork_at)
    except USER_ERRORS as error:
        printer.close()
        return fail(describe(error))
    except Exception as error:  # a failed run: one line, the log and last checkpoint are kept
        printer.close()
        if isinstance(error, OSError):
            quiet_stdout()  # a closed pipe must not add Python's own complaint at exit
        return fail(f"the run failed: {describe(error)}", 1)
    finally:
        printer.close()
    if not quiet:
        printer.console.print(visible(f"[Log] {log_path}"))  # the finished log is gzipped: its name has changed
        branch = existing_log(branch_log_path(log_path)) if fork_at else None
        if branch:
            result = branch_result_line(branch, fork_at[1].describe())
            if result:
                printer.console.print(visible(result))
            printer.console.print(visible(f"[Log] {branch} (the second branch; watch both: "
                                          f"rnnlab-tui watch {log_path} {branch})"))
    return 130 if reason == "stopped" else 0


def cmd_watch(args: argparse.Namespace) -> int:
    if "-" in args.log and len(args.log) > 1:
        return fail("watch - follows one stream; give log files to overlay several runs")
    paths = []
    for log in args.log:
        if os.path.isdir(log):
            return fail(f"{log}: a folder, not a log file")
        path = log if log == "-" else existing_log(log)
        if path is None:
            return fail(f"{log}: " + ("not a file (a device or a pipe): a log is a .jsonl or .jsonl.gz file"
                                      if os.path.exists(log) else "no such log file"))
        paths.append(path)
    if not terminal_can_draw():
        return fail("watch draws the monitor on a terminal, and this is not one (or TERM is dumb); "
                    "`rnnlab-tui export` turns a log into CSV or TensorBoard files")
    from tui.main import watch

    return watch(paths)


def cmd_gates(args: argparse.Namespace) -> int:
    from engine.errors import USER_ERRORS, describe
    from engine.heatmap import print_gates

    try:
        return print_gates(args.checkpoint, args.input, color=args.color)
    except USER_ERRORS as error:
        return fail(describe(error))
    except ValueError as error:
        return fail(str(error))


def cmd_generate(args: argparse.Namespace) -> int:
    from engine.generate import main as generate_main

    return generate_main(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from engine.config import home_dirs
    from engine.sweep.command import main as sweep_main

    for name, folder in home_dirs().items():
        if getattr(args, name) is None:
            setattr(args, name, folder)
    return sweep_main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.bench import main as bench_main

    return bench_main(args)


def add_sweep_options(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("--study", choices=("memory", "stability"),
                       help="memory (default): cells x lengths; stability: lr x clip max_norm (none, 20, 5, 1) "
                            "on the explode preset, which runs explode and when")
    sweep.add_argument("--preset", help="the base of every point instead of a study's; alone it trains one run of "
                                        "the preset (--preset memory: the memory study), --grid adds axes")
    sweep.add_argument("--grid", nargs="+", action="extend", metavar="KEY=V1,V2",
                       help="an axis over a train option, e.g. lr=0.05,0.2 clip=none,20 cell=srn,lstm; it replaces "
                            "the study's axis of that key")
    sweep.add_argument("--cells", help="shorthand for --grid cell=... (default srn,lstm)")
    sweep.add_argument("--lengths", help="shorthand for --grid length=... (default 10,15,20,25,30,35)")
    sweep.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local worker processes (default) or Ray tasks (pip install 'rnnlab-tui[ray]')")
    sweep.add_argument("--address", help="with --backend ray: the cluster to join (default: start a local one)")
    sweep.add_argument("--workers", type=int, default=0,
                       help="worker processes, or a local Ray cluster's CPUs (default: one per core)")
    sweep.add_argument("--epochs", type=int, help="override the preset's epochs")
    sweep.add_argument("--impl", choices=("auto",) + IMPLS, default="auto",
                       help="cell implementation: auto (default) takes the faster one per cell, scratch SRN "
                            "and torch LSTM (the same functions); naive = the textbook's cells, for comparison")
    sweep.add_argument("--sequential", action="store_true", help="one run after another in this process")
    sweep.add_argument("--seeds", type=int, default=1,
                       help="train each point N times, seeds from the preset's on (default 1); "
                            "tables, chart and conclusion use the mean")
    sweep.add_argument("--runs-dir", metavar="DIR", help=f"where logs and results go ({home_help('runs')})")
    sweep.add_argument("--checkpoint-dir", metavar="DIR", help=f"where checkpoints go ({home_help('checkpoints')})")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rnnlab-tui", description="Watch recurrent networks learn, fail and recover: "
                           "the RNN experiments of NNDL and d2l, live in the terminal.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True
    train = commands.add_parser("train", help="train a model (the TUI in a terminal, else headless)",
                                description="Train a model. With no preset the defaults are the explosion "
                                "chapter: SRN, SGD lr 0.2, sum loss, batch 64, L=20, 50 epochs.")
    add_train_options(train)
    train.set_defaults(func=cmd_train)
    watch = commands.add_parser("watch", help="replay run logs in the TUI (several are overlaid), "
                                "or follow a stream on stdin ('-')")
    watch.add_argument("log", nargs="+", help="runs/<id>.jsonl.gz (a finished run), runs/<id>.jsonl (a running "
                                              "one), or - for standard input; several logs are overlaid")
    watch.set_defaults(func=cmd_watch)
    generate = commands.add_parser("generate", help="continue a prefix with a character language model")
    generate.add_argument("--checkpoint", required=True)
    generate.add_argument("--prefix", required=True)
    generate.add_argument("--length", type=int, default=100, help="characters to generate (default 100)")
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    generate.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0 = all)")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate)
    gates = commands.add_parser("gates", help="print the gate heatmaps of a checkpoint for one input",
                                description="Print the gate activations (or the SRN's hidden state) of a "
                                "checkpoint's model reading one input, unit by time step, then the gradient "
                                "flow through time and sigma_max on the dev set.")
    gates.add_argument("--checkpoint", required=True, metavar="CKPT", help="a best.pt or last.pt")
    gates.add_argument("--input", default="", help='a digit model\'s digits, e.g. "6 7 0 0 1" (default: the '
                       "probe), or a language model's prefix of at most 64 characters")
    gates.add_argument("--color", action="store_true", help="colour as well as shading")
    gates.set_defaults(func=cmd_gates)
    sweep = commands.add_parser("sweep", help="many runs of a preset over a grid of train options (default: the "
                                "memory experiment, cells x lengths), on local workers or Ray",
                                description="Train every point of a grid of train options, from a preset. Without "
                                "--study or --preset: the memory experiment (NNDL 6.3, SRN and LSTM x L 10-35).")
    add_sweep_options(sweep)
    sweep.set_defaults(func=cmd_sweep)
    bench = commands.add_parser("bench", help="time the cells, the monitor, event ingest and generation")
    bench.add_argument("--json", action="store_true", help="print a machine-readable report")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions")
    bench.set_defaults(func=cmd_bench)
    add_file_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        print("rnnlab-tui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
