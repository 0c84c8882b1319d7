"""Generation: warm-up then one step per character, seeded sampling, refusals, the CLI's errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from engine import checkpoint as ckpt
from engine import commands as cmd
from engine.generate import (BIDIRECTIONAL_REFUSAL, choose, continuation, measure_generation_speed, predict,
                             stream_events)
from engine.models import LanguageModel


def test_predict_returns_the_prefix_and_its_continuation(tiny_model):
    model, vocab, _ = tiny_model
    text = predict(model, vocab, "time traveller", 30)
    assert text.startswith("time traveller") and len(text) == 14 + 30
    assert all(char in vocab for char in text)  # never <unk>
    assert predict(model, vocab, "time traveller", 30) == text  # greedy is deterministic


def test_same_seed_same_text(tiny_model):
    model, vocab, _ = tiny_model
    def sample(seed):
        return predict(model, vocab, "The ", 60, temperature=1.0, top_k=10, seed=seed)
    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_generation_leaves_training_randomness_alone(tiny_model):
    model, vocab, _ = tiny_model
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    predict(model, vocab, "The ", 20, temperature=1.0, seed=3)
    assert torch.equal(torch.rand(3), expected)


def test_top_k_restricts_the_draw():
    logits = torch.tensor([9.0, 0.0, 1.0, 3.0, 2.0])  # index 0 is <unk>: never drawn
    generator = torch.Generator().manual_seed(0)
    draws = {choose(logits, 5.0, 2, generator) for _ in range(200)}
    assert draws == {3, 4}
    assert choose(logits, 0.0, 0, None) == 3  # greedy, <unk> excluded


def test_the_state_carries_the_prefix(tiny_model):
    """Warming up in one pass and stepping one character at a time give d2l's step-by-step answer."""
    model, vocab, _ = tiny_model
    prefix = "the time traveller "
    state, outputs = None, []
    with torch.no_grad():
        for char in prefix:  # d2l's predict_ch8 warm-up, one character per call
            logits, state = model(torch.tensor([[vocab.encode(char)[0]]]), state)
        for _ in range(25):
            index = choose(logits[0, -1], 0.0, 0, None)
            outputs.append(vocab.idx_to_token[index])
            logits, state = model(torch.tensor([[index]]), state)
    assert "".join(continuation(model, vocab, prefix, 25)) == "".join(outputs)


def test_unknown_prefix_characters_are_reported_and_mapped(tiny_model):
    model, vocab, _ = tiny_model
    events, notices = [], []
    command = cmd.Generate(prefix="time 旅行者", length=10, request_id=4)
    stream_events(model, vocab, command, lambda cls, **fields: events.append(cls(**fields)),
                  lambda message, level="info": notices.append((level, message)), "cpu")
    assert notices and notices[0][0] == "warning" and "旅" in notices[0][1] and "<unk>" in notices[0][1]
    assert all(event.unknown == ["旅", "行", "者"] and event.request_id == 4 for event in events)
    assert [event.done for event in events] == [False, False, True]  # chunks, then done
    text = "".join(event.text for event in events)
    assert len(text) == 10
    assert text == predict(model, vocab, "time 旅行者", 10)[len("time 旅行者"):]
    # any character outside the vocabulary is read as the same <unk>
    assert predict(model, vocab, "time 旅", 10)[6:] == predict(model, vocab, "time \u2603", 10)[6:]


def test_bidirectional_generation_is_refused(tiny_config, timemachine_text):
    from engine.corpus import Vocabulary

    vocab = Vocabulary(timemachine_text)
    model = LanguageModel(tiny_config(bidirectional=True), len(vocab))
    with pytest.raises(ValueError, match="bidirectional"):
        predict(model, vocab, "time", 5)
    notices, events = [], []
    stream_events(model, vocab, cmd.Generate(prefix="time", length=5), lambda cls, **f: events.append(f),
                  lambda message, level="info": notices.append((level, message)), "cpu")
    assert events == [] and notices == [("error", BIDIRECTIONAL_REFUSAL)]
    assert "开始开始开始" in BIDIRECTIONAL_REFUSAL and "\n" not in BIDIRECTIONAL_REFUSAL


def test_bad_requests_are_refused(tiny_model):
    model, vocab, _ = tiny_model
    for options in (dict(prefix="", length=5), dict(prefix="a", length=-1), dict(prefix="a", length=5, top_k=-1),
                    dict(prefix="a", length=5, temperature=-0.5)):
        prefix = options.pop("prefix")
        length = options.pop("length")
        with pytest.raises(ValueError):
            predict(model, vocab, prefix, length, **options)


def test_generation_speed_is_measured_in_plain_floats():
    figures = measure_generation_speed(hidden=32, repeats=1)
    assert all(type(value) is float for value in figures.values())
    assert figures["ms_per_char"] > 0 and figures["ms_per_char_long_prefix"] > 0


# --- the command line --------------------------------------------------------


def cli(*arguments: str) -> subprocess.CompletedProcess:
    """``rnnlab-tui generate`` in its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "rnnlab_tui", "generate", *arguments],
                          capture_output=True, text=True, timeout=120)


def cli_here(capsys, *arguments: str) -> subprocess.CompletedProcess:
    """The same command in this process (no torch import to wait for); the same result type."""
    from rnnlab_tui.cli import main

    code = main(["generate", *arguments])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(arguments, code, captured.out, captured.err)


@pytest.fixture()
def saved(tmp_path, tiny_model):
    model, vocab, config = tiny_model
    def save(name="lm.pt", model=model, config=config):
        path = str(tmp_path / name)
        ckpt.save(path, {"config": config.to_dict(), "parameters": ckpt.snapshot_parameters(model),
                         "vocabulary": vocab.idx_to_token})
        return path
    return save


def test_cli_prints_the_prefix_and_its_continuation(saved, tiny_model, capsys):
    model, vocab, _ = tiny_model
    result = cli("--checkpoint", saved(), "--prefix", "time traveller", "--length", "40")
    assert result.returncode == 0, result.stderr
    assert result.stdout == predict(model, vocab, "time traveller", 40) + "\n"
    sampled = cli_here(capsys, "--checkpoint", saved(), "--prefix", "time 旅", "--length", "20", "--temperature", "1",
                  "--seed", "3")
    assert sampled.returncode == 0
    assert sampled.stdout == predict(model, vocab, "time 旅", 20, temperature=1.0, seed=3) + "\n"
    assert "旅" in sampled.stderr and "<unk>" in sampled.stderr


def _one_line_exit_2(result):
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_truncated_or_corrupt_checkpoint(saved, tmp_path, capsys):
    path = saved()
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    for bad, run in ((truncated, cli), (corrupt, cli), (tmp_path / "missing.pt", cli_here)):
        result = run("--checkpoint", str(bad), "--prefix", "time", "--length", "5") if run is cli else \
            run(capsys, "--checkpoint", str(bad), "--prefix", "time", "--length", "5")
        _one_line_exit_2(result)
        assert str(bad) in result.stderr


def test_cli_refuses_bidirectional_and_mismatched_checkpoints(saved, tiny_config, tiny_model, capsys):
    _, vocab, _ = tiny_model
    config = tiny_config(bidirectional=True)
    path = saved("bi.pt", model=LanguageModel(config, len(vocab)), config=config)
    result = cli_here(capsys, "--checkpoint", path, "--prefix", "time", "--length", "5")
    _one_line_exit_2(result)
    assert "bidirectional" in result.stderr and "开始开始开始" in result.stderr
    wrong = saved("wrong.pt", model=LanguageModel(tiny_config(hidden=8), len(vocab)))  # config says 16
    _one_line_exit_2(cli_here(capsys, "--checkpoint", wrong, "--prefix", "time", "--length", "5"))
    _one_line_exit_2(cli_here(capsys, "--checkpoint", saved(), "--prefix", "", "--length", "5"))


def test_gates_lines_up_wide_characters_and_names_the_unknown_ones(saved, capsys):
    from rich.cells import cell_len

    from rnnlab_tui.cli import main

    assert main(["gates", "--checkpoint", saved(), "--input", "time 旅"]) == 0
    captured = capsys.readouterr()
    assert "旅" in captured.err and "<unk>" in captured.err  # as generate says it
    lines = captured.out.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("input gate"))
    header, first_unit = lines[title + 1], lines[title + 2]
    assert header.split() == ["t", "i", "m", "e", "␣", "旅"]  # the space has a label too
    assert cell_len(header) == len(first_unit)  # 旅 takes two cells: its column is as wide as the others
