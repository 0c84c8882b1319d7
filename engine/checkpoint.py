"""Checkpoints: tensors under their textbook names plus plain metadata, written atomically.

A checkpoint holds the run's config, so ``gates`` and ``generate`` rebuild the model from it alone,
and is read back with ``torch.load(weights_only=True)``: no pickled code ever runs.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

FORMAT = "rnnlab-tui checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or not ours; one line for the user."""


def save(path: str, payload: dict) -> None:
    """Write to a temporary file beside ``path``, fsync it, then rename: a crash leaves the old file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as handle:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
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


def load(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            KeyError, AttributeError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {reason[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rnnlab-tui checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported")
    for key in ("config", "parameters"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: the checkpoint has no {key}")
    return payload
