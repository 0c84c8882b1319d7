"""Run configuration, presets and validation. Pure Python: the CLI reads it before torch loads."""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import asdict, dataclass, fields, replace

CELLS = ("srn", "lstm", "gru")
IMPLS = ("torch", "scratch", "naive")  # naive: the textbook's code as printed, slowest
TASKS = ("digits", "lm")
HEADS = ("classification", "regression")
OPTIMIZERS = ("sgd", "adam")
REDUCTIONS = ("sum", "mean")
NORM_TYPES = ("2", "1", "inf")
INITS = ("auto", "zeros", "xavier", "torch")
SAMPLINGS = ("sequential", "random")
DIGIT_LENGTHS = (5, 10, 15, 20, 25, 30, 35)
CORPORA = ("timemachine", "tangshi300")
# each corpus's probe: the heatmaps' input and the console's example prefix
PROBES = {"timemachine": "time traveller", "tangshi300": "床前明月光"}
DEVICE_PATTERN = re.compile(r"cpu|mps|cuda(:[0-9]{1,3})?")

# Upper bounds: beyond them a run cannot work on any machine this lab is for, and numbers this large
# would reach torch as C++ overflows instead of a sentence.
MAX_SEED = 2**64 - 1  # torch's generators take 64-bit seeds
MAX_LR = 1e4  # a larger step sends the weights past float32's range within a few updates
LIMITS = {"hidden": 8192, "embed": 8192, "batch_size": 65536, "epochs": 1_000_000, "seq_len": 100_000,
          "log_steps": 10**9, "eval_steps": 10**9}
# Options that belong to one task only: given for the other, they would be silently ignored.
DIGITS_ONLY = ("length", "head")
LM_ONLY = ("corpus", "seq_len", "sampling", "layers", "bidirectional")

# The repository root (the folder above engine/), for the tests and tools that work from a clone.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The digit files and the corpora travel inside the package, so an installed wheel finds them.
DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets")
# runs/ and checkpoints/ go under this folder when the variable is set, else under the current folder.
HOME_VARIABLE = "RNNLAB_HOME"


class ConfigError(ValueError):
    """An option value that cannot work; the CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class TrainConfig:
    # what is learnt
    task: str = "digits"  # digits (NNDL 6.1 digit sum) | lm (d2l character language model)
    head: str = "classification"  # classification over 19 sums | regression (one output, MSE)
    length: int = 20  # digit sequence length L (digits task)
    dataset: str = "digits"  # digits (data/digits/L) | numeric (the four-sample regression set)
    corpus: str = "timemachine"  # lm task: data/corpus/<corpus>.txt
    seq_len: int = 35  # lm task: characters per training subsequence
    sampling: str = "sequential"  # lm task: sequential (state carried) | random (fresh state)
    # the network
    cell: str = "srn"  # srn | lstm | gru
    impl: str = "torch"  # torch (fused kernels, textbook names) | scratch (the equations)
    hidden: int = 32  # hidden units
    embed: int = 32  # embedding size (0 = one-hot input, lm task)
    layers: int = 1
    bidirectional: bool = False
    init: str = "auto"  # auto (SRN: zeros as the source; LSTM/GRU: xavier) | zeros | xavier | torch
    # optimisation: the defaults are the explosion chapter (NNDL 6.2.2)
    optimizer: str = "sgd"
    lr: float = 0.2
    loss_reduction: str = "sum"
    batch_size: int = 64
    epochs: int = 50
    shuffle: bool = False  # the textbook keeps the data order
    clip: float | None = None  # max_norm of gradient clipping; None = off
    clip_type: str = "2"  # the norm clipping measures: 2 | 1 | inf
    # The digit data are fixed (NumPy seed 0, as the textbook); this seeds the weights and batches.
    # With the explosion chapter's zero initialisation the size of the first jump depends on it: seed 5
    # shows the textbook's picture (the norms leap at step 3, then collapse).
    seed: int = 5
    # bookkeeping
    log_steps: int = 1  # a textbook log line every log_steps steps
    eval_steps: int = 0  # evaluate every eval_steps steps (0 = once per epoch) and at the last step
    device: str = "cpu"
    speed: float = 0.0  # steps/s cap, 0 = as fast as possible
    pause_on_alarm: bool = False  # pause at the first explosion (the TUI's default for the digit tasks)
    probe: str = "6 7 0 0 1"  # gate heatmap input, padded with zeros to the length
    checkpoint_dir: str = "checkpoints"  # build_config puts it under $RNNLAB_HOME when that is set
    runs_dir: str = "runs"
    data_dir: str = ""  # "" = the package's own data (engine/datasets: digits/ and corpus/)
    preset: str = ""
    run_id: str = ""
    resume: str = ""  # checkpoint to continue from ("" = a fresh run)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The config of these values (unknown keys dropped); ConfigError when one has the wrong type."""
        known = {f.name: f.type for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        for key, value in kept.items():
            if not _has_type(value, known[key]):
                raise ConfigError(f"{key} must be {_TYPE_WORDS[known[key]]}, not {value!r:.40}")
        return cls(**kept)

    @property
    def resolved_init(self) -> str:
        if self.init != "auto":
            return self.init
        return "zeros" if self.cell == "srn" else "xavier"

    @property
    def data_root(self) -> str:
        return self.data_dir or DATA_ROOT


_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "text", "bool": "true or false",
               "float | None": "a number or none"}


def _has_type(value, annotation: str) -> bool:
    if isinstance(value, bool) or annotation == "bool":  # a bool is an int to Python, not to a config
        return annotation == "bool" and isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int)
    if annotation == "str":
        return isinstance(value, str)
    if annotation == "float | None" and value is None:
        return True
    return isinstance(value, (int, float))


# Each preset names an experiment of the source material.
PRESETS: dict[str, dict] = {
    # NNDL 6.2.2: SRN, SGD lr 0.2, batch 64, L=20, sum loss, zeros init -> the norms explode
    "explode": dict(cell="srn", optimizer="sgd", lr=0.2, loss_reduction="sum", batch_size=64,
                    length=20, epochs=50, init="zeros", clip=None, log_steps=1),
    # NNDL 6.2.3: the same with clip_grad_norm_(max_norm=20)
    "clip": dict(cell="srn", optimizer="sgd", lr=0.2, loss_reduction="sum", batch_size=64,
                 length=20, epochs=50, init="zeros", clip=20.0, clip_type="2", log_steps=1),
    # Pascanu et al. 2013's cliff after a stable phase: the explode settings at L=5 as full-batch gradient
    # descent (all 300 examples a step) at lr 0.01. The loss holds at 19 classes' chance for 50 steps
    # (total norm about 24), then the norms climb and explode at step 58 (seed 5: b's norm 5.9e3) and the
    # run ends at chance (test 0.06). Clipped at the advisor's 24 from the explosion, with a rewind to
    # step 50, it learns (test 0.45). Other seeds end at chance as well but mostly without a 100x jump.
    "rescue": dict(cell="srn", optimizer="sgd", lr=0.01, loss_reduction="sum", batch_size=300,
                   length=5, epochs=600, init="zeros", clip=None, log_steps=1, eval_steps=10),
    # NNDL 6.3: Adam 1e-3, batch 8, 500 epochs, L1 clip 5, evaluate every 100 steps; each cell starts
    # from the source's initialisation (the SRN's W, U, b at zero, the LSTM's weights Xavier-uniform)
    "memory": dict(cell="lstm", optimizer="adam", lr=1e-3, loss_reduction="mean", batch_size=8,
                   length=10, epochs=500, init="auto", clip=5.0, clip_type="1",
                   eval_steps=100, log_steps=100),
    # the Paddle notebook's regression variant on four samples
    "numeric": dict(cell="srn", head="regression", dataset="numeric", optimizer="sgd", lr=0.05,
                    loss_reduction="mean", batch_size=1, length=5, epochs=200, init="xavier",
                    clip=None, log_steps=1, eval_steps=4),
    # d2l 8.5 / 9.2 character language models
    # (d2l's SGD lr 1 needs hundreds of epochs; Adam reaches validation perplexity 5 in a few minutes)
    # d2l's setting: SGD lr 1 with the gradient clipped to norm 1 (theta)
    "lm-timemachine": dict(task="lm", corpus="timemachine", cell="lstm", hidden=256, embed=32,
                           optimizer="sgd", lr=1.0, loss_reduction="mean", batch_size=32,
                           seq_len=35, epochs=50, clip=1.0, clip_type="2", init="torch",
                           log_steps=10, eval_steps=100),
    # 2,573 distinct characters in 25k: SGD barely moves the rare ones before the text is
    # memorised, so the poems train with Adam; validation perplexity bottoms out near epoch 8.
    "lm-tangshi": dict(task="lm", corpus="tangshi300", cell="lstm", hidden=256, embed=64,
                       optimizer="adam", lr=0.004, loss_reduction="mean", batch_size=32,
                       seq_len=35, epochs=20, clip=1.0, clip_type="2", init="torch",
                       log_steps=10, eval_steps=0),
}


def home_dirs() -> dict[str, str]:
    """Where runs/ and checkpoints/ go: under $RNNLAB_HOME when it is set, else the current folder."""
    home = os.environ.get(HOME_VARIABLE, "")
    return {"runs_dir": os.path.join(home, "runs"), "checkpoint_dir": os.path.join(home, "checkpoints")}


def build_config(preset: str = "", **overrides) -> TrainConfig:
    """The defaults, then the preset, then the options the user gave (None = not given)."""
    values: dict = home_dirs()
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        values.update(PRESETS[preset])
        values["preset"] = preset
    elif overrides.get("task") == "lm":
        # The explosion chapter's defaults make no sense for a language model: start from the
        # corpus's preset (hidden 256, clipping at 1, ...) and let the given options override it.
        values.update(PRESETS["lm-tangshi" if overrides.get("corpus") == "tangshi300" else "lm-timemachine"])
    given = {key: value for key, value in overrides.items() if value is not None}
    values.update(given)
    config = TrainConfig.from_dict(values)
    validate(config)
    check_applicable(config, given)
    return config


def check_applicable(config: TrainConfig, given: dict) -> None:
    """ConfigError for an option given for the task it does not apply to (it would be ignored)."""
    other = LM_ONLY if config.task == "digits" else DIGITS_ONLY
    task = {"digits": "the language model task (--task lm)", "lm": "the digits task"}[config.task]
    for name in other:
        if name in given:
            raise ConfigError(f"--{name.replace('_', '-')} is for {task}; this run's task is {config.task}")


def _number(value: int) -> str:
    """An integer as a user typed it, shortened when it is too long to read."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:8]}... ({len(text)} digits)"


def _choice(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, not {value!r}")


def validate(config: TrainConfig) -> None:
    """Raise ConfigError with one clear line for a value or combination that cannot work."""
    _choice("task", config.task, TASKS)
    _choice("head", config.head, HEADS)
    _choice("cell", config.cell, CELLS)
    _choice("impl", config.impl, IMPLS)
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("loss_reduction", config.loss_reduction, REDUCTIONS)
    _choice("clip_type", config.clip_type, NORM_TYPES)
    _choice("init", config.init, INITS)
    _choice("sampling", config.sampling, SAMPLINGS)
    if not (isinstance(config.lr, (int, float)) and math.isfinite(config.lr) and config.lr > 0):
        raise ConfigError(f"--lr must be a positive number, not {config.lr}")
    if config.lr > MAX_LR:
        raise ConfigError(f"--lr must be at most {MAX_LR:g}, not {config.lr:g} "
                          "(a larger step sends the weights past float32's range within a few updates)")
    if config.clip is not None and not (math.isfinite(config.clip) and config.clip > 0):
        raise ConfigError(f"--clip must be a positive max_norm, not {config.clip}")
    for name in ("batch_size", "epochs", "hidden", "layers", "log_steps"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(config, name)}")
    for name, limit in LIMITS.items():
        if getattr(config, name) > limit:
            raise ConfigError(f"--{name.replace('_', '-')} must be at most {limit:,}, not {_number(getattr(config, name))}")
    if not 0 <= config.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be between 0 and 2**64-1 (torch's seeds are 64-bit), not {_number(config.seed)}")
    if config.embed < 0 or (config.task == "digits" and config.embed < 1):
        raise ConfigError(f"--embed must be at least 1 for the digits task, not {config.embed}")
    if config.eval_steps < 0:
        raise ConfigError(f"--eval-steps must be 0 or more, not {config.eval_steps}")
    if config.speed < 0 or not math.isfinite(config.speed):
        raise ConfigError(f"--speed must be 0 (unlimited) or a positive steps/s cap, not {config.speed}")
    if config.layers > 2:
        raise ConfigError(f"--layers must be 1 or 2, not {config.layers}")
    if config.task == "digits":
        if config.length < 3:
            raise ConfigError(f"--length must be at least 3 (two digits to add and one more), not {config.length}")
        if config.dataset == "digits" and config.length not in DIGIT_LENGTHS:
            lengths = ", ".join(str(length) for length in DIGIT_LENGTHS)
            raise ConfigError(f"--length must be one of the generated lengths {lengths}, not {config.length}")
        if config.dataset not in ("digits", "numeric"):
            raise ConfigError(f"unknown dataset {config.dataset!r}")
        if config.bidirectional:
            raise ConfigError("--bidirectional is for the language model task (--task lm)")
        if config.layers != 1:
            raise ConfigError("--layers 2 is for the language model task (--task lm)")
    else:
        if config.head != "classification":
            raise ConfigError("--head regression is for the digits task")
        if config.seq_len < 2:
            raise ConfigError(f"--seq-len must be at least 2, not {config.seq_len}")
    if not DEVICE_PATTERN.fullmatch(config.device):
        raise ConfigError(f"--device must be cpu, cuda, cuda:N or mps, not {config.device!r}")
    for name in ("checkpoint_dir", "runs_dir"):
        if not getattr(config, name).strip():
            raise ConfigError(f"--{name.replace('_', '-')} must name a folder")
    if config.cell == "srn" and config.resolved_init == "zeros" and config.task == "lm":
        raise ConfigError("--init zeros is the digit-sum SRN's source initialisation; use xavier or torch")


def with_overrides(config: TrainConfig, **changes) -> TrainConfig:
    updated = replace(config, **changes)
    validate(updated)
    return updated


def new_run_id(config: TrainConfig) -> str:
    """cell-task-date-time-pid: sorts by start, and two runs started in one second differ."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{config.cell}-{config.task}-{stamp}-{os.getpid() % 100000:05d}"
