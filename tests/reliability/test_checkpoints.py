"""Checkpoints as an attacker or a failing disk leaves them: refused in one line, never loaded altered,
never run."""

import os
import pickle
import random
import subprocess

import pytest
import torch

from engine import checkpoint as ckpt

from .conftest import Files, cli


@pytest.fixture(scope="module")
def intact(last_checkpoint):
    with open(last_checkpoint, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("seed", range(40))
def test_a_flipped_byte_is_refused_or_changes_nothing(seed, intact, last_checkpoint, home, place, capsys, verdict):
    """A byte flipped anywhere: refused in one line, or (a byte of the zip's padding) loaded with every
    tensor and value as saved. Before checksums, 283 of 450 such files loaded with altered weights."""
    data = bytearray(intact)
    position = random.Random(seed).randrange(len(data))
    data[position] ^= 0xFF
    path = place / "flipped.pt"
    path.write_bytes(bytes(data))
    original = cli(["gates", "--checkpoint", last_checkpoint], capsys)
    files = Files(home)
    result = cli(["gates", "--checkpoint", str(path)], capsys)
    if result.code == 0:
        loaded, saved = ckpt.load(str(path)), ckpt.load(last_checkpoint)
        assert ckpt.checksum(loaded) == ckpt.checksum(saved)  # the flip touched no content
        assert result.out.replace(str(path), "") == original.out.replace(last_checkpoint, "")
        verdict(result, 0, files, lines=0)
    else:
        verdict(result, 2, files)
        assert str(path) in result.err


def _legacy(path, payload: dict) -> None:
    torch.save(payload, path)


EDITS = {
    # what a checkpoint of the previous format holds: no checksum to verify
    "version-1": (lambda p: {**{k: v for k, v in p.items() if k != "checksum"}, "version": 1},
                  "written before checkpoints carried a checksum"),
    "checksum-missing": (lambda p: {k: v for k, v in p.items() if k != "checksum"}, "checksum does not match"),
    "checksum-edited": (lambda p: {**p, "checksum": "0" * 64}, "checksum does not match"),
    "weight-edited": (lambda p: {**p, "parameters": {**p["parameters"], "W": p["parameters"]["W"] + 1}},
                      "checksum does not match"),
    "config-edited": (lambda p: {**p, "config": {**p["config"], "lr": 100.0}}, "checksum does not match"),
    "step-edited": (lambda p: {**p, "step": 10**6}, "checksum does not match"),
    "version-99": (lambda p: {**p, "version": 99}, "checkpoint version 99 is not supported"),
    "not-ours": (lambda p: {"parameters": p["parameters"]}, "not an rnnlab-tui checkpoint"),
    "a-list": (lambda p: [1, 2, 3], "not an rnnlab-tui checkpoint"),
}


@pytest.mark.parametrize("name", EDITS)
def test_an_edited_checkpoint_is_refused(name, last_checkpoint, home, place, capsys, verdict):
    edit, fragment = EDITS[name]
    payload = torch.load(last_checkpoint, weights_only=True)
    path = place / f"{name}.pt"
    _legacy(path, edit(payload))
    files = Files(home)
    result = cli(["train", "--headless", "--resume", str(path)], capsys)
    verdict(result, 2, files)
    assert fragment in result.err


class _Code:
    """Unpickling this would call ``function(*arguments)``."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def _payloads(marker: str) -> dict:
    import builtins

    return {
        "os.system": _Code(os.system, f"touch {marker}"),
        "subprocess.call": _Code(subprocess.call, ["touch", marker]),
        "builtins.exec": _Code(builtins.exec, f"open({marker!r}, 'w').close()"),
        "builtins.eval": _Code(builtins.eval, f"open({marker!r}, 'w')"),
        "pathlib.touch": _Code(__import__("pathlib").Path(marker).touch),
    }


@pytest.mark.parametrize("form", ["torch.save", "pickle-2", "pickle-4"])
@pytest.mark.parametrize("payload", ["os.system", "subprocess.call", "builtins.exec", "builtins.eval", "pathlib.touch"])
def test_a_malicious_pickle_is_refused_and_never_runs(payload, form, home, place, capsys, verdict):
    marker = str(place / "ran")
    code = _payloads(marker)[payload]
    path = place / "evil.pt"
    content = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "config": {}, "parameters": {"W": code}}
    if form == "torch.save":
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content, protocol=int(form[-1])))
    files = Files(home)
    command = {"os.system": ["gates", "--checkpoint", str(path)],
               "subprocess.call": ["generate", "--checkpoint", str(path), "--prefix", "a"]}.get(
        payload, ["train", "--headless", "--resume", str(path)])
    result = cli(command, capsys)
    verdict(result, 2, files)
    assert not os.path.exists(marker), "the pickled code ran"
    assert str(path) in result.err
