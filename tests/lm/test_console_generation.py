"""The console's generation after the run: greedy or a seeded draw (temperature, top-k), from the final
or the best weights; a bad request gets one line and the model keeps answering."""

from __future__ import annotations

import io

from engine import commands as cmd

from engine import events as ev
from engine.afterrun import answer_after_run
from engine.generate import load_generator, predict
from engine.runner import Runner
from engine.stream import CommandReader


def asked(runner: Runner, events: list, commands: list[cmd.Command]) -> list[ev.Event]:
    """What the finished ``runner`` answers to ``commands`` (the stream then ends, as when the TUI goes);
    a command that cannot be read is answered as the engine's child answers it, with a warning."""
    start = len(events)
    lines = io.StringIO("".join(c.to_json() + "\n" for c in commands))
    answer_after_run(runner, CommandReader(lines, on_error=lambda message: runner.notice(message, "error")))
    return events[start:]


def texts(answers: list[ev.Event]) -> dict[int, str]:
    """request id -> the generated text."""
    found: dict[int, str] = {}
    for event in answers:
        if type(event) is ev.Generation:
            found[event.request_id] = found.get(event.request_id, "") + event.text
    return found


def test_greedy_and_seeded_sampling_from_the_final_and_the_best_weights(tmp_path, tiny_config, timemachine_text):
    folder = tmp_path / "data" / "corpus"
    folder.mkdir(parents=True)
    (folder / "timemachine.txt").write_text(timemachine_text[:3000], encoding="utf-8")
    config = tiny_config(data_dir=str(tmp_path / "data"), checkpoint_dir=str(tmp_path / "checkpoints"),
                         runs_dir=str(tmp_path / "runs"), batch_size=8, seq_len=10, epochs=2, eval_steps=5,
                         optimizer="adam", lr=0.01, run_id="lm-console")
    events: list[ev.Event] = []
    runner = Runner(config, events.append)
    assert runner.run() == "finished"

    def generate(request_id, **sampling):
        return cmd.Generate(prefix="the ", length=40, request_id=request_id, **sampling)

    answers = asked(runner, events, [
        generate(1), generate(2, temperature=0.8, top_k=5, seed=3), generate(3, temperature=0.8, top_k=5, seed=3),
        generate(4, temperature=0.8, top_k=5, seed=4), generate(5, temperature=1.0, top_k=1, seed=9),
        generate(6, temperature=1e3), generate(7, seed=-1, temperature=1.0), generate(8, top_k="many"),
        cmd.UseWeights(which="best"), generate(9), generate(10, temperature=0.8, top_k=5, seed=3)])
    final = load_generator(str(tmp_path / "checkpoints" / "lm-console" / "last.pt"))
    best = load_generator(str(tmp_path / "checkpoints" / "lm-console" / "best.pt"))
    text = texts(answers)
    assert text[1] == predict(final[0], final[1], "the ", 40)[4:]  # greedy: the likeliest character each step
    assert text[2] == text[3] == predict(final[0], final[1], "the ", 40, temperature=0.8, top_k=5, seed=3)[4:]
    assert text[4] != text[2]  # another seed, another draw
    assert text[5] == text[1]  # a draw from the one likeliest character is greedy
    assert text[9] == predict(best[0], best[1], "the ", 40)[4:]
    assert text[10] == predict(best[0], best[1], "the ", 40, temperature=0.8, top_k=5, seed=3)[4:]
    refusals = [e.message for e in answers if type(e) is ev.Notice]
    assert len(refusals) == 3 and all(e.level == "error" for e in answers if type(e) is ev.Notice)
    said = " | ".join(refusals)  # the malformed line is refused as it is read, before the others are answered
    assert "temperature must be 0 (greedy) or between 0.01 and 100, not 1000" in said
    assert "seed must be between 0 and 2**64-1" in said
    assert "ignored a malformed command: generate field top_k is not int: 'many'" in said
    assert {6, 7, 8}.isdisjoint(text)
