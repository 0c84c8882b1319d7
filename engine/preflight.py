"""What can be checked before a run starts: the device, the memory, where its files go, the run it resumes.

Each check raises ConfigError (or CheckpointError) with one line that says what to do instead, so
a run that cannot work ends before the first event, with exit 2, and leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

from .config import ConfigError, TrainConfig, check_applicable, validate

GATES = {"srn": 1, "gru": 3, "lstm": 4}
LM_VOCABULARY = 4096  # more characters than either corpus holds (tangshi300: about 2,600)
# Floats kept per parameter while training: the weights, their gradients, Adam's two moments, the
# ring of five rewind snapshots (weights and optimiser state), the checkpoint being written.
COPIES_PER_PARAMETER = 20
# The options that decide the model's tensors: a checkpoint resumes only with the same ones.
SHAPE_OPTIONS = ("task", "cell", "hidden", "embed", "layers", "bidirectional", "corpus", "head", "dataset")


def check_device(device: str) -> None:
    """ConfigError unless ``device`` (already of the form cpu, cuda, cuda:N or mps) exists here."""
    if device == "cpu":
        return
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: no Apple GPU (MPS) on this machine; use --device cpu")
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU on this machine (or this torch has no CUDA); "
                          "use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"numbered from 0")


def parameter_count(config: TrainConfig, vocabulary: int) -> int:
    """The model's trainable numbers, counted from its config (no tensor is made)."""
    gates, hidden = GATES[config.cell], config.hidden
    directions = 2 if config.bidirectional else 1
    inputs = config.embed or vocabulary  # embed 0: one-hot characters
    count = vocabulary * config.embed  # the embedding
    for layer in range(config.layers):
        layer_input = inputs if layer == 0 else hidden * directions
        count += directions * gates * hidden * (layer_input + hidden + 2)  # W, U and torch's two biases
    outputs = vocabulary if config.task == "lm" else 19
    return count + hidden * directions * outputs + outputs


def check_memory(config: TrainConfig) -> None:
    """ConfigError when training this model would need more memory than the machine has free."""
    vocabulary = LM_VOCABULARY if config.task == "lm" else 10
    parameters = parameter_count(config, vocabulary)
    time_steps = config.seq_len if config.task == "lm" else config.length
    # the forward pass keeps every step's gate activations for backward
    activations = config.batch_size * time_steps * config.hidden * GATES[config.cell] * config.layers * 4
    needed = 4 * (parameters * COPIES_PER_PARAMETER + activations)
    available = _available_bytes()
    if available is not None and needed > available:
        raise ConfigError(f"this model ({parameters:,} parameters) needs about {needed / 2**30:.1f} GiB to train, "
                          f"and {available / 2**30:.1f} GiB are free; use a smaller --hidden, --embed or "
                          "--batch-size")


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_new_file(path: str, option: str = "--events") -> None:
    """ConfigError unless a new file can be made at ``path``; an existing file is never overwritten."""
    if not path:
        raise ConfigError(f"{option} must name a file")
    if os.path.lexists(path):
        kind = "a folder" if os.path.isdir(path) else "a file that exists"
        raise ConfigError(f"{option} {path}: {kind}; a run never overwrites one, give a new file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(folder):  # a typo in the path must not become a tree of new folders
        raise ConfigError(f"{option} {path}: no folder {folder}")
    _check_writable_folder(folder, option, path)


def check_folder(path: str, option: str = "--checkpoint-dir") -> None:
    """ConfigError unless ``path`` is (or can become) a folder this process can write in."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option} {path}: a file, not a folder")
    _check_writable_folder(os.path.abspath(path), option, path)


def _check_writable_folder(folder: str, option: str, given: str) -> None:
    existing = folder
    while not os.path.isdir(existing):  # the nearest folder that exists decides
        if os.path.lexists(existing):
            raise ConfigError(f"{option} {given}: {existing} is a file, not a folder")
        existing = os.path.dirname(existing)
    try:  # a real try, not os.access: it also sees read-only mounts, and holds for root
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(f"{option} {given}: cannot write in {existing} ({error.strerror or error})") from None


def create_exclusively(path: str, option: str = "--events") -> None:
    """Make ``path`` as a new empty file, or raise ConfigError if it exists: two runs given the same
    log cannot both write it (the second is refused, nothing of the first is lost)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        raise ConfigError(f"{option} {path}: a file that exists; a run never overwrites one, "
                          "give a new file name") from None
    except OSError as error:
        raise ConfigError(f"{option} {path}: cannot create it ({error.strerror or error})") from None


def check_run(config: TrainConfig, events_path: str | None) -> None:
    """Everything above for one run, before torch builds anything."""
    check_device(config.device)
    if config.device == "cpu":
        check_memory(config)
    check_folder(config.checkpoint_dir)
    if events_path is not None:
        check_new_file(events_path)
    else:  # the run's own log goes to runs/<run-id>.jsonl
        check_folder(config.runs_dir, "--runs-dir")


def resolve_resume(path: str, overrides: dict) -> tuple[TrainConfig, dict]:
    """The config of a checkpoint with the command line's options on top, and the checkpoint.

    An option that would change the model's shape (another cell, task, size) is refused: the saved
    weights cannot fill another model. So is a checkpoint whose tensors do not fit its own config."""
    from . import checkpoint as ckpt

    payload = ckpt.load(path)
    saved = ckpt.config_of(payload, path)
    given = {key: value for key, value in overrides.items() if value is not None}
    for name in SHAPE_OPTIONS:
        if name in given and given[name] != getattr(saved, name):
            raise ConfigError(f"--resume {path}: the checkpoint holds a {saved.cell} {saved.task} model with "
                              f"{name.replace('_', ' ')} {getattr(saved, name)}; drop --{name.replace('_', '-')} "
                              "or start a fresh run without --resume")
    config = replace(saved, **given, run_id="")
    validate(config)
    # the epochs the checkpoint has finished: a best.pt of a last step names the next batch of the
    # epoch it ended (one past its last), a last.pt the first of the next epoch
    epoch, batch, per_epoch = int(payload.get("epoch", 1)), int(payload.get("batch", 0)), payload.get("steps_per_epoch")
    done = epoch - 1 + (1 if per_epoch and batch >= per_epoch else 0)
    if done >= config.epochs:  # the loop would end before its first step
        raise ConfigError(f"--resume {path}: the run has trained {done} epochs (step {payload.get('step')}) and "
                          f"this one would end after {config.epochs}; --epochs {done + 1} or more trains it further")
    check_applicable(config, given)
    ckpt.model_of(payload, config, path)  # the tensors fit the model the config describes
    return replace(config, resume=path), payload
