"""``export`` and ``data``: the commands that write files for other tools."""

from __future__ import annotations

import argparse
import os

from engine.logs import existing_log
from engine.text import visible
from rnnlab_tui.common import fail


def cmd_data(args: argparse.Namespace) -> int:
    from engine.data import digit_paths, generate_all

    if not args.output:
        return fail("--output must name a folder")
    if os.path.lexists(args.output) and not os.path.isdir(args.output):
        return fail(f"--output {args.output}: a file, not a folder")
    existing = [path for path in digit_paths(args.output) if os.path.lexists(path)]
    if existing and not args.force:  # they may have been edited: nothing is overwritten unasked
        more = " and more" if len(existing) > 1 else ""
        return fail(f"--output {args.output} already holds digit files ({existing[0]}{more}); "
                    "--force writes over them")
    try:
        paths = generate_all(args.output)
    except OSError as error:
        return fail(f"cannot write {error.filename or args.output}: {error.strerror or error}")
    print(visible(f"wrote {len(paths)} files under {args.output}"))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from engine.config import home_dirs

    if not (args.tensorboard or args.csv):
        return fail("export needs --tensorboard DIR or --csv FILE (or both)")
    if os.path.isdir(args.run):
        return fail(f"{args.run}: a folder, not a log file or run")
    # RUN: a log file, its plain name once it has been gzipped, or a run id under the runs folder
    path = existing_log(args.run) or existing_log(os.path.join(home_dirs()["runs_dir"], args.run + ".jsonl"))
    if path is None:
        return fail(f"{args.run}: " + ("not a file (a device or a pipe): a log is a .jsonl or .jsonl.gz file"
                                       if os.path.exists(args.run) else "no such log file or run"))
    from engine.export import ExportError, export

    try:
        lines = export(path, tensorboard=args.tensorboard, csv_path=args.csv)
    except ExportError as error:
        return fail(str(error))
    except OSError as error:
        return fail(f"cannot export {path}: {error.strerror or error}"
                    + (f" ({error.filename})" if error.filename else ""))
    for line in lines:
        print(visible(line))  # the paths in them are the user's or the log's: shown, never obeyed
    return 0


def add_file_commands(commands) -> None:
    """``export`` and ``data``: the commands that write files for other tools."""
    export = commands.add_parser("export", help="a run log to TensorBoard event files or CSV",
                                 description="Write a run's gradient norms (grad_norm/W, grad_norm/U_f, ...), their "
                                 "total, loss, accuracy or perplexity, clip factor and lr as TensorBoard event "
                                 "files (tensorboard --logdir DIR) or as CSV, one row per step.")
    export.add_argument("run", metavar="RUN", help="a log (runs/<id>.jsonl.gz or .jsonl), or a run id under runs/")
    export.add_argument("--tensorboard", metavar="DIR",
                        help="write event files to DIR/<run-id> (needs: pip install 'rnnlab-tui[tensorboard]')")
    export.add_argument("--csv", metavar="FILE", help="write one row per training step to FILE")
    export.set_defaults(func=cmd_export)
    data = commands.add_parser("data", help="regenerate the digit-sum files exactly as the textbook does",
                               description="Write digits/{L}/{train,dev,test}.txt, byte-identical to the "
                               "textbook's files (and to the ones this package ships and trains on).")
    data.add_argument("--output", metavar="DIR", default=os.path.join("data", "digits"),
                      help="folder to write (default ./data/digits)")
    data.add_argument("--force", action="store_true", help="write over digit files that are there already")
    data.set_defaults(func=cmd_data)
