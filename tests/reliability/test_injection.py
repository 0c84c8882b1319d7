"""Text from a checkpoint, a log, a stream or the command line reaches the terminal with its control
characters shown (ESC as ␛), never obeyed; rich or Textual markup in it shows as written."""

import json
import os
import sys
import time

import pytest

from .conftest import Files, Result, cli, craft_checkpoint, environment, run

TITLE = "\x1b]0;pwned\x07"  # retitles the window
CLEAR = "\x1b[2J\x1b[H"  # clears the screen
HIDE = "\x1b[?25l"  # hides the cursor
CSI = "\x9b31m"  # the one-byte C1 form of ESC [
REVERSE = "\u202e"  # right-to-left override: the text reads other than it runs
MALICIOUS = [TITLE, CLEAR, HIDE, CSI, REVERSE, "\x07", "\x08\x08\x08"]


@pytest.fixture(scope="module")
def crafted_model(home) -> str:
    """A language model whose every character but <unk> is an escape sequence or a control character."""
    return craft_checkpoint(home / "escapes.pt", task="lm", vocabulary=["<unk>"] + MALICIOUS)


@pytest.mark.parametrize("temperature", ["0", "1"])
def test_generate_shows_a_crafted_vocabulary(temperature, crafted_model, home, place, capsys, verdict):
    files = Files(home, place)
    result = cli(["generate", "--checkpoint", crafted_model, "--prefix", TITLE, "--length", "40",
                  "--temperature", temperature], capsys)
    verdict(result, 0, files, lines=None)  # a warning line may name the prefix's unknown characters
    assert "␛]0;pwned␇" in result.out
    assert any(visible in result.out for visible in ("␛[2J", "␛[?25l", "<U+009B>", "<U+202E>", "␇", "␈"))


@pytest.mark.parametrize("text", [TITLE + "ab", CLEAR + "x", CSI + REVERSE, "[bold]ab[/bold]"])
def test_generate_echoes_the_prefix_visibly(text, home, place, capsys, verdict):
    model = craft_checkpoint(place / "plain.pt", task="lm")
    files = Files(home)
    result = cli(["generate", "--checkpoint", model, "--prefix", text, "--length", "5"], capsys)
    verdict(result, 0, files, lines=None)
    assert result.out.startswith(text.replace("\x1b", "␛").replace("\x07", "␇").replace("\x9b", "<U+009B>")
                                 .replace(REVERSE, "<U+202E>"))
    assert len(result.err.splitlines()) <= 1


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("text", [TITLE + "ab", "[bold]a[/bold]" + HIDE])
def test_gates_column_headers_are_shown_as_written(text, color, crafted_model, home, place, capsys, verdict):
    files = Files(home, place)
    result = cli(["gates", "--checkpoint", crafted_model, "--input", text] + (["--color"] if color else []), capsys)
    verdict(result, 0, files, lines=None)
    assert "␛" in result.out
    assert len(result.err.splitlines()) <= 1  # the characters read as <unk>, named as generate names them
    if "[bold]" in text:
        assert "[bold]a[/bold]" in result.out  # rich markup shows as written, in colour too


def test_headless_log_line_names_a_crafted_file_visibly(home, place, capsys, verdict):
    files = Files(home)
    result = cli(["train", "--headless", "--length", "5", "--epochs", "1", "--events",
                  str(place / f"{TITLE}[bold]run.jsonl")], capsys)
    verdict(result, 0, files, lines=0)
    assert "␛]0;pwned␇[bold]run.jsonl" in result.out


def _crafted_log(home, place) -> str:
    """A recorded run whose config, notices, status and heatmap tokens carry escapes and markup."""
    with open(home / "keep.jsonl", encoding="utf-8") as handle:
        started = json.loads(handle.readline())
    started["config"]["optimizer"] = f"sgd{TITLE}"
    started["config"]["impl"] = f"[bold red]torch{CLEAR}"
    run = started["run"]
    lines = [started,
             {"type": "notice", "run": run, "step": 0, "t": 0.1, "level": "error", "message": f"one{TITLE}two[bold]B[/bold]"},
             {"type": "status", "run": run, "step": 0, "t": 0.2, "state": "running", "message": f"up{HIDE}{CSI}",
              "speed": 0.0},
             {"type": "generation", "run": run, "step": 0, "t": 0.3, "prefix": f"pre{CLEAR}", "text": f"gen{TITLE}\nok",
              "done": True, "unknown": [], "request_id": 1}]
    path = place / "crafted.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return str(path)


def terminal_environment(cwd, extra: dict | None = None) -> dict:
    """The environment of a command in an 80x24 terminal: the size comes from the terminal itself."""
    env = environment(cwd, {"TERM": "xterm-256color", **(extra or {})})
    for name in ("COLUMNS", "LINES"):
        env.pop(name, None)
    return env


def terminal(argv: list[str], cwd, wait_for: str, keys: str = "q", env: dict | None = None) -> tuple[int, bytes]:
    """Run ``argv`` in an 80x24 terminal until ``wait_for`` shows, press ``keys``; (exit code, every
    byte it wrote to the terminal)."""
    import io

    pexpect = pytest.importorskip("pexpect")
    log = io.BytesIO()
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(cwd), dimensions=(24, 80), timeout=60,
                          env=terminal_environment(cwd, env))
    child.logfile_read = log
    try:
        child.expect(wait_for)
        # a few more frames, so everything queued is drawn; a command that ends by itself may be gone
        if child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.5) == 0:
            child.send(keys)
            child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    code = child.exitstatus if child.exitstatus is not None else -(child.signalstatus or 0)
    return code, log.getvalue()


def _assert_nothing_injected(raw: bytes) -> None:
    """The crafted log's sequences, each beside the text it was planted in, never reach the terminal
    as they are (Textual's own sequences do: it hides the cursor, for one); their visible forms do."""
    for planted in (f"one{TITLE}", f"up{HIDE}", f"pre{CLEAR}", f"gen{TITLE}", f"sgd{TITLE}", f"torch{CLEAR}", CSI):
        assert planted.encode() not in raw, f"{planted!r} reached the terminal"
    assert b"pwned\x07" not in raw
    assert "␛]0;pwned␇".encode() in raw  # shown instead


@pytest.mark.parametrize("how", ["replay", "stream"])
def test_watch_shows_a_crafted_log_without_obeying_it(how, home, place, verdict):
    path = _crafted_log(home, place)
    files = Files(home, place)
    if how == "replay":
        argv, wait = [sys.executable, "-m", "rnnlab_tui", "watch", path], "replay"
    else:
        argv, wait = ["/bin/sh", "-c", f"cat '{path}' | {sys.executable} -m rnnlab_tui watch -"], "stream ended"
    code, raw = terminal(argv, place, wait)
    _assert_nothing_injected(raw)
    assert "[bold red]torch".encode() in raw  # markup shown as written, not applied
    verdict(Result(code, "", ""), 0, files, lines=0)


@pytest.mark.parametrize("args, shown", [(["generate", "--prefix"], "ti<0x9B>me"),  # the echoed prefix
                                         (["gates", "--input"], " <0x9B> ")])  # a column label
def test_a_byte_that_is_not_utf8_in_an_argument_is_shown_not_sent(args, shown, home, place, verdict):
    model = craft_checkpoint(place / "plain.pt", task="lm")
    files = Files(home)
    text = b"ti\x9bme"  # 0x9B alone is no UTF-8; a terminal takes it as the one-byte CSI
    result = run(args[:1] + ["--checkpoint", model] + args[1:] + [text], cwd=place)
    verdict(result, 0, files, lines=None)
    assert shown in result.out and "\ufffd" not in result.out + result.err  # no raw byte came out
