"""Event sources: partial and corrupt lines, non-finite floats, a child that answers and one that dies."""

import gzip
import math
import time

from engine.commands import Pause, Stop
from engine.events import Step
from engine.logs import read_log
from tui.sources import ChildProcessSource, LogFileSource
from tui.synthetic import synthetic_events, write_log

from monitor_fakes import fake_child  # noqa: F401 (fixture)


def _all(source):
    return [event for batch in source.batches() for event in batch]


def test_log_replay_skips_and_counts_bad_lines(tmp_path):
    path = tmp_path / "run.jsonl"
    count = write_log(str(path), synthetic_events(20))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("this is not json\n")
        handle.write('{"type":"no_such_event","run":"x"}\n')
        handle.write('{"type":"step","run":"x","step":21,"lo')  # a partial last line
    source = LogFileSource(str(path))
    events = _all(source)
    assert len(events) == count
    assert source.bad_lines == 3


def test_log_replay_skips_a_complete_event_with_a_field_of_the_wrong_type(tmp_path):
    path = tmp_path / "run.jsonl"
    count = write_log(str(path), synthetic_events(20))
    wrong = Step(run="synthetic", step=21, loss=1.0).to_json().replace('"loss":1.0', '"loss":"zz"')
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(wrong + "\n")
    source = LogFileSource(str(path))
    events = _all(source)
    assert len(events) == count and all(not isinstance(event.loss, str) for event in events if event.type == "step")
    assert source.bad_lines == 1


def test_a_cut_gzipped_log_replays_every_complete_line_before_the_cut(tmp_path):
    plain = tmp_path / "run.jsonl"
    write_log(str(plain), synthetic_events(2000))
    whole = gzip.compress(plain.read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    readable, _ = read_log(str(cut))  # what export recovers: every complete line before the cut
    source = LogFileSource(str(cut))
    events = _all(source)
    assert len(readable) > 1000 and [event.to_json() for event in events] == [event.to_json() for event in readable]
    assert source.bad_lines >= 1  # the cut is counted, so the monitor says the log is cut off


def test_non_finite_norms_survive_the_trip(tmp_path):
    path = tmp_path / "nan.jsonl"
    events = list(synthetic_events(3))
    events.append(Step(step=4, grad_norms={"W": math.nan, "U": math.inf}, total_norm=math.inf))
    write_log(str(path), events)
    step = _all(LogFileSource(str(path)))[-1]
    assert math.isnan(step.grad_norms["W"]) and math.isinf(step.total_norm)


def test_child_receives_commands_and_stops(fake_child):
    source = ChildProcessSource(fake_child).start()
    batches = source.batches()
    seen = []
    while not any(event.type == "alarm" for event in seen):
        seen.extend(next(batches))
    assert source.send(Pause())
    notices = []
    while not notices:
        notices = [event for event in next(batches) if event.type == "notice"]
    assert notices[0].message == "got pause"
    source.stop(timeout=5)
    assert source.exit_code == 0
    assert not source.send(Stop())  # nobody left to receive it


def test_dying_child_leaves_its_error_and_exit_code(fake_child):
    source = ChildProcessSource(fake_child + ["die"]).start()
    events = _all(source)
    assert events and events[0].type == "run_started"
    assert source.bad_lines == 1  # the partial last line
    deadline = time.monotonic() + 5
    while source.exit_code is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert source.exit_code == 3
    assert "out of memory" in source.error_text


def test_missing_program_is_a_start_error(tmp_path):
    source = ChildProcessSource([str(tmp_path / "no-such-program")]).start()
    assert source.start_error and source.exit_code == 2
    assert _all(source) == []
