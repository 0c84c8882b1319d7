"""Checkpoints: tensors under their textbook names plus plain metadata, written atomically.

A checkpoint holds the run's config, so ``gates`` and ``generate`` rebuild the model from it alone,
and is read back with ``torch.load(weights_only=True)``: no pickled code ever runs. It also holds a
SHA-256 of everything else in it (each tensor's dtype, shape and bytes, each value, in key order):
torch's zip format checks no sums of its own, and a flipped byte would otherwise load as altered weights.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import replace

import torch

from . import events as ev
from .config import TrainConfig

FORMAT = "rnnlab-tui checkpoint"
VERSION = 2  # 2: with a checksum


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or not ours; one line for the user."""


class CheckpointWriteError(OSError):
    """A checkpoint that cannot be written (a full disk): the run fails, the previous one is kept."""


def save(path: str, payload: dict) -> None:
    """Write to a temporary file beside ``path``, fsync it, then rename: a crash leaves the old file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    content = {"format": FORMAT, "version": VERSION, **payload}
    content["checksum"] = checksum(content)
    # Serialised in memory first: torch's own writer turns a failed write (a full disk) into a
    # RuntimeError about zip positions; this write raises the OSError that says what happened.
    serialised = io.BytesIO()
    torch.save(content, serialised)
    try:
        with open(temporary, "wb") as handle:
            handle.write(serialised.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:  # a full disk, an interrupt: no half-written file stays behind
        try:
            os.remove(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):  # say which file could not be written
            raise CheckpointWriteError(f"cannot write the checkpoint {path}: {error.strerror or error}") from None
        raise
    fsync_folder(folder)


def fsync_folder(folder: str) -> None:
    """Make a rename inside ``folder`` durable (where the system lets a folder be opened)."""
    try:
        directory = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def snapshot_parameters(model) -> dict[str, torch.Tensor]:
    """The model's tensors by textbook name, copied to the CPU (contiguous, detached)."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous()
            for name, tensor in model.textbook_parameters().items()}


def checksum(payload: dict) -> str:
    """SHA-256 of everything in ``payload`` but its "checksum": tensors by dtype, shape and bytes, other
    values by repr, dictionaries in key order."""
    digest = hashlib.sha256()
    _feed(digest, "", {key: value for key, value in payload.items() if key != "checksum"})
    return digest.hexdigest()


def _feed(digest, where: str, value) -> None:
    if isinstance(value, torch.Tensor):
        data = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{where}:{data.dtype}:{tuple(value.shape)}\n".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"{where}:dict:{len(value)}\n".encode())
        for key in sorted(value, key=repr):
            _feed(digest, f"{where}/{key!r}", value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{where}:{type(value).__name__}:{len(value)}\n".encode())
        for index, item in enumerate(value):
            _feed(digest, f"{where}/{index}", item)
    else:
        digest.update(f"{where}={value!r}\n".encode())


def load(path: str) -> dict:
    """The checkpoint at ``path``, verified; CheckpointError (one line) for anything else."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: a folder, not a checkpoint (checkpoints are <run>/best.pt and last.pt)")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: " + ("not a file (a device or a pipe): a checkpoint is a .pt file"
                                             if os.path.exists(path) else "no such checkpoint"))
    try:
        with warnings.catch_warnings():  # torch warns of a foreign pickle protocol: the line below says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # whatever the unpickler trips over in a damaged or foreign file
        if "GLOBAL" in str(error) or "Unsupported global" in str(error):
            raise CheckpointError(f"{path}: refused: it holds pickled code or objects, and a checkpoint "
                                  "holds tensors and plain values only (nothing in it was run)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupt, or not a checkpoint: "
                              f"{type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rnnlab-tui checkpoint")
    if payload.get("version") == 1:
        raise CheckpointError(f"{path}: written before checkpoints carried a checksum, so it cannot be "
                              "verified; train the run again to get one")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r:.20} is not supported")
    try:
        intact = payload.get("checksum") == checksum(payload)
    except Exception:  # a value no checkpoint of ours holds
        intact = False
    if not intact:
        raise CheckpointError(f"{path}: the checksum does not match its contents: the file is corrupt "
                              "(or was edited); use another checkpoint")
    for key in ("config", "parameters"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: the checkpoint has no {key}")
    return payload


def config_of(payload: dict, path: str):
    """The TrainConfig a checkpoint was trained with; CheckpointError when it is not a valid one."""
    from .config import ConfigError, TrainConfig, validate

    try:
        config = TrainConfig.from_dict(payload["config"])
        validate(config)
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"{path}: the checkpoint's config is not valid: {error}") from None
    return config


def model_of(payload: dict, config, path: str):
    """The model ``config`` describes, holding the checkpoint's weights; CheckpointError when the
    tensors do not fit it."""
    from .models import build_model

    vocabulary = payload.get("vocabulary") or []
    if not isinstance(vocabulary, list) or not all(isinstance(token, str) for token in vocabulary):
        raise CheckpointError(f"{path}: the checkpoint's vocabulary is not a list of characters")
    if config.task == "lm" and not vocabulary:
        raise CheckpointError(f"{path}: the checkpoint has no vocabulary")
    try:
        model = build_model(config, len(vocabulary))
        model.load_textbook_parameters(payload["parameters"])
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as error:
        message = str(error).strip("'\"")
        raise CheckpointError(f"{path}: the weights do not fit the model its config describes ({message})") from None
    return model


def resumed_settings(settings: ev.Settings, config: TrainConfig, payload: dict) -> ev.Settings:
    """The settings a checkpoint was left with (clipping switched on with `c`, a new lr ...), except
    those the command line of ``train --resume`` sets to another value than the run started with."""
    saved = payload.get("settings") or {}
    started = TrainConfig.from_dict(payload.get("config") or {})
    given = {"clip_on": (config.clip is not None, started.clip is not None), "clip_max_norm": (config.clip, started.clip),
             "clip_norm_type": (config.clip_type, started.clip_type), "lr": (config.lr, started.lr),
             "speed": (config.speed, started.speed)}
    kept = {name: saved[name] for name, (now, before) in given.items() if name in saved and now == before}
    return replace(settings, **kept)


def copy_state(value):
    """A deep copy of an optimizer's ``state_dict()``: tensors cloned, containers rebuilt."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: copy_state(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(copy_state(item) for item in value)
    return value
