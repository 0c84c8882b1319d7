"""Bad input: checked before anything runs, one line on stderr, exit 2, nothing written or changed."""

import os

import pytest

from .conftest import Files, cli, craft_checkpoint

TRAIN = ["train", "--headless", "--epochs", "1"]
# {home}: the home with a finished run in it; {last}: that run's last.pt; {log}: its log
TRAIN_CASES = {
    "device-cuda": (["--device", "cuda"], "no CUDA GPU"),
    "device-cuda-index": (["--device", "cuda:1"], "--device cuda:1"),
    "device-cuda-abc": (["--device", "cuda:abc"], "--device must be cpu, cuda, cuda:N or mps"),
    "device-mps": (["--device", "mps"], "--device mps"),
    "device-tpu": (["--device", "tpu"], "--device must be"),
    "device-escape": (["--device", "cuda\x1b[2J\x1b]0;pwned\x07"], "--device must be"),
    "seed-65-bits": (["--seed", str(2**64)], "--seed must be between 0 and 2**64-1"),
    "seed-negative": (["--seed", "-1"], "--seed must be between"),
    "seed-huge": (["--seed", "9" * 40], "digits)"),
    "lr-1e308": (["--lr", "1e308"], "--lr must be at most"),
    "lr-inf": (["--lr", "inf"], "--lr must be a positive number"),
    "lr-nan": (["--lr", "nan"], "--lr must be a positive number"),
    "lr-zero": (["--lr", "0"], "--lr must be a positive number"),
    "lr-escape": (["--lr", "\x1b[31mfast"], "is not a number"),
    "hidden-10e23": (["--hidden", "99999999999999999999999"], "--hidden must be at most"),
    "hidden-zero": (["--hidden", "0"], "--hidden must be at least 1"),
    "embed-huge": (["--embed", str(10**9)], "--embed must be at most"),
    "batch-huge": (["--batch-size", str(10**7)], "--batch-size must be at most"),
    "epochs-huge": (["--epochs", str(10**12)], "--epochs must be at most"),
    "too-large-for-memory": (["--cell", "lstm", "--hidden", "8192", "--embed", "8192", "--batch-size", "65536"],
                             "GiB are free"),
    "clip-negative": (["--clip", "-3"], "--clip must be a positive max_norm"),
    "speed-negative": (["--speed", "-1"], "--speed must be 0"),
    "length-7": (["--length", "7"], "--length must be one of the generated lengths"),
    "lm-with-length": (["--task", "lm", "--length", "10"], "--length is for the digits task"),
    "lm-preset-with-head": (["--preset", "lm-tangshi", "--head", "regression"], "is for the digits task"),
    "digits-with-corpus": (["--corpus", "tangshi300"], "--corpus is for the language model task"),
    "digits-with-seq-len": (["--seq-len", "10"], "--seq-len is for the language model task"),
    # found only once the corpus is read: still refused before any log or checkpoint is written
    "seq-len-beyond-the-text": (["--preset", "lm-timemachine", "--hidden", "8", "--seq-len", "99999"],
                                "is too short for --batch-size 32 x --seq-len 99999"),
    "digits-with-sampling": (["--sampling", "random"], "--sampling is for the language model task"),
    "digits-bidirectional": (["--bidirectional"], "--bidirectional is for the language model task"),
    "events-existing-log": (["--events", "{log}"], "a file that exists"),
    "events-existing-checkpoint": (["--events", "{last}"], "a file that exists"),
    "events-a-folder": (["--events", "{home}"], "a folder"),
    "events-under-a-file": (["--events", "{home}/notes.txt/run.jsonl"], "is a file, not a folder"),
    "events-unwritable": (["--events", "/proc/run.jsonl"], "cannot write in /proc"),
    "events-in-no-folder": (["--events", "{home}/nonexist/deeper/x.jsonl"], "x.jsonl: no folder"),
    "events-escape-name": (["--events", "{home}/\x1b]0;pwned\x07.jsonl"], "␛]0;pwned␇"),
    "checkpoint-dir-empty": (["--checkpoint-dir", ""], "--checkpoint-dir must name a folder"),
    "checkpoint-dir-a-file": (["--checkpoint-dir", "{home}/notes.txt"], "a file, not a folder"),
    "checkpoint-dir-unwritable": (["--checkpoint-dir", "/proc/rnnlab"], "cannot write in /proc"),
    "runs-dir-empty": (["--runs-dir", ""], "--runs-dir must name a folder"),
    "runs-dir-a-file": (["--runs-dir", "{home}/notes.txt"], "a file, not a folder"),
    "runs-dir-unwritable": (["--runs-dir", "/proc/rnnlab-runs"], "cannot write in /proc"),
    "runs-dir-for-the-stream": (["--events", "-", "--runs-dir", "/proc/rnnlab-runs"], "cannot write in /proc"),
    "resume-missing": (["--resume", "{home}/missing.pt"], "no such checkpoint"),
    "resume-a-device": (["--resume", "/dev/null"], "/dev/null: not a file (a device or a pipe)"),
    "resume-a-folder": (["--resume", "{home}"], "a folder, not a checkpoint"),
    "resume-text-file": (["--resume", "{home}/notes.txt"], "not a readable checkpoint"),
    "resume-two-bytes": (["--resume", "{home}/two.pt"], "not a readable checkpoint"),
    "resume-empty-file": (["--resume", "{home}/empty.pt"], "not a readable checkpoint"),
    "resume-a-log": (["--resume", "{log}"], "not a readable checkpoint"),
    "resume-other-cell": (["--resume", "{last}", "--cell", "lstm"], "drop --cell"),
    "resume-other-task": (["--resume", "{last}", "--task", "lm"], "drop --task"),
    "resume-other-shape": (["--resume", "{last}", "--hidden", "64"], "drop --hidden"),
    "resume-with-preset": (["--resume", "{last}", "--preset", "clip"], "--preset starts a fresh run"),
}


def _fill(args: list[str], home) -> list[str]:
    (last,) = [os.path.join(root, name) for root, _, names in os.walk(home / "checkpoints")
               for name in names if name == "last.pt"]
    return [arg.format(home=home, last=last, log=home / "keep.jsonl") if "{" in arg else arg for arg in args]


@pytest.mark.parametrize("name", TRAIN_CASES)
def test_train_refuses_before_it_starts(name, home, place, capsys, verdict):
    args, fragment = TRAIN_CASES[name]
    files = Files(home, place)
    result = cli(TRAIN[:] + _fill(args, home), capsys)
    verdict(result, 2, files)
    assert fragment in result.err
    assert not os.listdir(place), "a refused run leaves no log and no checkpoint folder behind"


CRAFTED = {
    # a config value of the wrong type, with a checksum that matches it (written by the engine's save)
    "wrong-typed-hidden": (dict(task="digits", edit=lambda p: p["config"].update(hidden="abc")),
                           "hidden must be an integer"),
    "wrong-typed-lr": (dict(task="digits", edit=lambda p: p["config"].update(lr=[1])), "lr must be a number"),
    "bool-as-epochs": (dict(task="digits", edit=lambda p: p["config"].update(epochs=True)), "epochs must be an integer"),
    "config-not-valid": (dict(task="digits", edit=lambda p: p["config"].update(cell="transformer")),
                         "--cell must be one of"),
    "tensors-do-not-fit": (dict(task="digits", edit=lambda p: p["config"].update(hidden=16)),
                           "the weights do not fit"),
    "tensor-missing": (dict(task="digits", edit=lambda p: p["parameters"].pop("W")), "the weights do not fit"),
    "vocabulary-not-text": (dict(task="lm", edit=lambda p: p.update(vocabulary=[1, 2, 3])),
                            "vocabulary is not a list of characters"),
}


@pytest.mark.parametrize("command", ["train", "gates", "generate"])
@pytest.mark.parametrize("name", CRAFTED)
def test_a_crafted_checkpoint_is_one_line(name, command, home, place, capsys, verdict):
    options, fragment = CRAFTED[name]
    path = craft_checkpoint(home / f"crafted-{name}.pt", **options)
    files = Files(home, place)
    args = {"train": TRAIN[:2] + ["--resume", path], "gates": ["gates", "--checkpoint", path, "--input", "ab"],
            "generate": ["generate", "--checkpoint", path, "--prefix", "a"]}[command]
    if command == "gates" and options["task"] == "digits":
        args = args[:-2]
    result = cli(args, capsys)
    verdict(result, 2, files)
    # generate asks for a language model before it looks at the weights of a digits checkpoint
    assert fragment in result.err or (command == "generate" and "generation needs a language model" in result.err)


SWEEP = ["sweep", "--epochs", "1", "--sequential", "--cells", "srn", "--lengths", "10"]
OTHER_CASES = {
    "sweep-workers-negative": (["sweep", "--workers", "-1"], "--workers must be 0"),
    "sweep-workers-huge": (["sweep", "--workers", "100000"], "--workers must be 0"),
    "sweep-length-7": (["sweep", "--lengths", "7"], "--lengths must be among"),
    "sweep-cell-unknown": (["sweep", "--cells", "rnn"], "--cells must name"),
    "sweep-seeds-zero": (["sweep", "--seeds", "0"], "--seeds must be at least 1"),
    "sweep-epochs-huge": (["sweep", "--epochs", str(10**12)], "--epochs must be at most"),
    # one small point, so that a sweep the check lets through ends soon
    "sweep-runs-dir-a-file": (SWEEP + ["--runs-dir", "{home}/notes.txt"], "--runs-dir {home}/notes.txt: a file, not a folder"),
    "sweep-runs-dir-unwritable": (SWEEP + ["--runs-dir", "/proc/rnnlab-runs"], "cannot write in /proc"),
    "sweep-runs-dir-escape": (SWEEP + ["--runs-dir", "{home}/notes.txt/\x1b[2J"], "notes.txt/␛[2J"),
    "sweep-checkpoint-dir-a-file": (SWEEP + ["--checkpoint-dir", "{home}/notes.txt"], "a file, not a folder"),
    "export-csv-exists": (["export", "{log}", "--csv", "{home}/notes.txt"], "already exists"),
    "export-not-a-log": (["export", "{home}/notes.txt", "--csv", "{home}/never-written.csv"], "notes.txt"),
    "export-missing-log": (["export", "{home}/missing.jsonl", "--csv", "{home}/never-written.csv"], "missing"),
    "export-csv-unwritable": (["export", "{log}", "--csv", "/proc/rnnlab.csv"], "/proc/rnnlab.csv"),
    "export-nothing-asked": (["export", "{log}"], "export needs --tensorboard DIR or --csv FILE"),
    "gates-a-folder": (["gates", "--checkpoint", "{home}"], "a folder, not a checkpoint"),
    "generate-a-folder": (["generate", "--checkpoint", "{home}", "--prefix", "a"], "a folder, not a checkpoint"),
    "data-output-a-file": (["data", "--output", "{home}/notes.txt"], "a file, not a folder"),
    "data-output-unwritable": (["data", "--output", "/proc/rnnlab-digits"], "cannot write"),
    "watch-missing": (["watch", "{home}/missing.jsonl"], "no such log file"),
    "watch-a-folder": (["watch", "{home}"], "{home}: a folder, not a log file"),
    "export-a-folder": (["export", "{home}", "--csv", "{home}/never-written.csv"], "{home}: a folder, not a log"),
    "watch-no-terminal": (["watch", "{log}"], "not one"),
    "unknown-command-escape": (["\x1b]0;pwned\x07"], "invalid choice"),
    "unknown-option": (["train", "--bogus"], "unrecognized arguments"),
    "generate-missing": (["generate", "--checkpoint", "{home}/missing.pt", "--prefix", "a"], "no such checkpoint"),
    "generate-text-file": (["generate", "--checkpoint", "{home}/notes.txt", "--prefix", "a"], "not a readable"),
    "generate-two-bytes": (["generate", "--checkpoint", "{home}/two.pt", "--prefix", "a"], "not a readable"),
    "generate-digits-checkpoint": (["generate", "--checkpoint", "{last}", "--prefix", "a"], "needs a language model"),
    "gates-text-file": (["gates", "--checkpoint", "{home}/notes.txt"], "not a readable checkpoint"),
    "gates-two-bytes": (["gates", "--checkpoint", "{home}/two.pt"], "not a readable checkpoint"),
    "gates-empty-file": (["gates", "--checkpoint", "{home}/empty.pt"], "not a readable checkpoint"),
    "gates-not-digits": (["gates", "--checkpoint", "{last}", "--input", "6 7 x"], "is not a digit"),
    "gates-too-many-digits": (["gates", "--checkpoint", "{last}", "--input", "1 " * 6], "at most 5 digits"),
}


@pytest.mark.parametrize("name", OTHER_CASES)
def test_other_commands_refuse_in_one_line(name, home, place, capsys, verdict, monkeypatch):
    args, fragment = OTHER_CASES[name]
    files = Files(home, place)
    result = cli(_fill(args, home), capsys)
    verdict(result, 2, files)
    assert _fill([fragment], home)[0] in result.err


@pytest.fixture(scope="module")
def language_model(home) -> str:
    return craft_checkpoint(home / "lm.pt", task="lm")


LM_CASES = {
    "temperature-1e-300": (["--temperature", "1e-300"], "the temperature must be 0 (greedy) or between"),
    "temperature-1e300": (["--temperature", "1e300"], "the temperature must be 0 (greedy) or between"),
    "temperature-negative": (["--temperature", "-1"], "the temperature must be"),
    "temperature-nan": (["--temperature", "nan"], "the temperature must be"),
    "seed-65-bits": (["--seed", str(2**64)], "--seed must be between"),
    "length-negative": (["--length", "-1"], "the length must be between"),
    "top-k-negative": (["--top-k", "-2"], "top-k must be"),
    "prefix-empty": (["--prefix", ""], "give a prefix"),
}


@pytest.mark.parametrize("name", LM_CASES)
def test_generate_refuses_what_it_cannot_answer(name, language_model, home, place, capsys, verdict):
    args, fragment = LM_CASES[name]
    files = Files(home, place)
    base = ["generate", "--checkpoint", language_model] + ([] if "--prefix" in args else ["--prefix", "ab"])
    result = cli(base + args, capsys)
    verdict(result, 2, files)
    assert fragment in result.err


@pytest.mark.parametrize("size", [65, 5000])
def test_gates_input_is_at_most_64_characters(size, language_model, home, place, capsys, verdict):
    files = Files(home, place)
    result = cli(["gates", "--checkpoint", language_model, "--input", "ab" * (size // 2) + "a" * (size % 2)], capsys)
    verdict(result, 2, files)
    assert "--input is at most 64 characters" in result.err and result.out == ""
