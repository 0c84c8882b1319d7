"""A finished run's log is gzipped atomically, and every reader takes either form."""

import gzip
import os

import pytest

from engine import session
from engine.logs import read_log
from engine.session import compress_log
from tui.sources import LogFileSource
from tui.synthetic import synthetic_events, write_log


def _plain_log(tmp_path, steps=300):
    path = tmp_path / "run.jsonl"
    write_log(str(path), synthetic_events(steps))
    return path


def test_a_compressed_log_holds_the_same_lines_and_replaces_the_plain_one(tmp_path):
    path = _plain_log(tmp_path)
    text = path.read_bytes()
    compressed = compress_log(str(path))
    assert compressed == str(path) + ".gz"
    assert not path.exists() and os.listdir(tmp_path) == ["run.jsonl.gz"]  # no temporary file left
    assert gzip.decompress(open(compressed, "rb").read()) == text
    assert os.path.getsize(compressed) < len(text) / 2


def test_every_reader_gives_the_same_events_from_either_form(tmp_path):
    path = _plain_log(tmp_path)
    plain_events, plain_bad = read_log(str(path))
    replayed = [event for batch in LogFileSource(str(path)).batches() for event in batch]
    compressed = compress_log(str(path))
    assert read_log(compressed) == (plain_events, plain_bad) and plain_bad == 0
    assert [event for batch in LogFileSource(compressed).batches() for event in batch] == replayed == plain_events


def test_a_failure_while_compressing_keeps_the_plain_log(tmp_path, monkeypatch):
    path = _plain_log(tmp_path)
    text = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(session.os, "fsync", disk_full)
    assert compress_log(str(path)) == str(path)
    assert path.read_bytes() == text and os.listdir(tmp_path) == ["run.jsonl"]


def test_an_existing_compressed_log_is_never_replaced(tmp_path):
    path = _plain_log(tmp_path)
    (tmp_path / "run.jsonl.gz").write_bytes(b"an earlier log")
    assert compress_log(str(path)) == str(path)
    assert (tmp_path / "run.jsonl.gz").read_bytes() == b"an earlier log" and path.exists()


def test_a_damaged_gzip_log_keeps_what_came_before_the_damage(tmp_path):
    path = _plain_log(tmp_path, steps=2000)
    everything, _ = read_log(str(path))
    data = open(compress_log(str(path)), "rb").read()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    events, bad = read_log(str(cut))
    assert bad >= 1 and 0 < len(events) < len(everything) and events == everything[: len(events)]
    source = LogFileSource(str(cut))
    replayed = [event for batch in source.batches() for event in batch]
    assert source.bad_lines >= 1 and replayed == everything[: len(replayed)] and len(replayed) > 0


@pytest.mark.parametrize("name", ["run.jsonl", "run.jsonl.gz"])
def test_watch_finds_a_finished_log_by_its_plain_name(tmp_path, name):
    from engine.logs import existing_log

    path = _plain_log(tmp_path)
    final = compress_log(str(path)) if name.endswith(".gz") else str(path)
    assert existing_log(str(path)) == final
    assert existing_log(str(tmp_path / "other.jsonl")) is None
