import filecmp
import os

import pytest

from engine.config import DATA_ROOT
from engine.config import DIGIT_LENGTHS
from engine.data import DataError, generate_all, load_digits, load_split
from engine.digits import parse_digits


def test_regeneration_is_byte_identical_to_the_committed_files(tmp_path):
    generate_all(str(tmp_path))
    for length in DIGIT_LENGTHS:
        for split in ("train", "dev", "test"):
            committed = os.path.join(DATA_ROOT, "digits", str(length), f"{split}.txt")
            assert filecmp.cmp(committed, tmp_path / str(length) / f"{split}.txt", shallow=False), committed


def test_the_files_follow_the_textbook_recipe():
    splits = load_digits(DATA_ROOT, 20)
    assert {name: len(examples) for name, examples in splits.items()} == {"train": 300, "dev": 100, "test": 100}
    for sequence, label in splits["train"]:
        assert len(sequence) == 20 and label == sequence[0] + sequence[1]
        assert sum(1 for digit in sequence[2:] if digit) <= 1  # one position set, maybe to 0
    first = [sequence[:2] for sequence, _ in splits["train"][:3]]
    assert first == [[0, 0]] * 3  # each base example copied k=3 times, in order


@pytest.mark.parametrize("line, reason", [
    ("6 7 0 0 1\t13\n6 7 0 x 1\t13", ":2: the sequence must be digits"),
    ("6 7 0 0 1 13", ":1: expected 'digits<TAB>label'"),
    ("6 7 0 0 1\tthirteen", ":1: the label 'thirteen' is not an integer"),
    ("6 7 0 0\t13", ":1: expected 5 digits, found 4"),
    ("6 7 0 0 1\t40", ":1: the label 40 is outside 0..18"),
])
def test_a_malformed_line_is_rejected_with_file_and_line(tmp_path, line, reason):
    path = tmp_path / "train.txt"
    path.write_text(line)
    with pytest.raises(DataError) as error:
        load_split(str(path), 5)
    assert str(error.value).startswith(str(path)) and reason in str(error.value)


def test_a_missing_file_names_the_way_to_regenerate(tmp_path):
    """One split file lost among the others: the command the error names brings it back."""
    from rnnlab_tui.cli import main

    folder = tmp_path / "digits"
    generate_all(str(folder))
    lost = folder / "20" / "dev.txt"
    lost.unlink()
    with pytest.raises(DataError, match="rnnlab-tui data") as error:
        load_split(str(lost))
    command = str(error.value).split("`")[1].split()
    assert command[:2] == ["rnnlab-tui", "data"] and main(command[1:]) == 0
    assert load_split(str(lost))


@pytest.mark.parametrize("text, digits", [("6 7 0 0 1", [6, 7, 0, 0, 1]), ("67001", [6, 7, 0, 0, 1]), ("6,7", [6, 7])])
def test_console_digits_parse(text, digits):
    assert parse_digits(text) == digits


@pytest.mark.parametrize("text", ["", "6", "6 a", "6 7 ٣", "12 3", "6 7 0 0 1 0"])
def test_bad_console_digits_say_why(text):
    with pytest.raises(ValueError):
        parse_digits(text, 5)


def test_data_keeps_digit_files_that_are_there_unless_forced(tmp_path, capsys):
    from rnnlab_tui.cli import main

    assert main(["data", "--output", str(tmp_path)]) == 0
    edited = tmp_path / "20" / "train.txt"
    edited.write_text("my own examples\t0\n")
    capsys.readouterr()
    assert main(["data", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"rnnlab-tui: --output {tmp_path} already holds digit files ({tmp_path}/5/train.txt and more); "
        "--force writes over them"]
    assert edited.read_text() == "my own examples\t0\n"
    assert main(["data", "--output", str(tmp_path), "--force"]) == 0
    assert filecmp.cmp(edited, os.path.join(DATA_ROOT, "digits", "20", "train.txt"), shallow=False)


def test_data_refuses_an_empty_output_folder(tmp_path, monkeypatch, capsys):
    from rnnlab_tui.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["data", "--output", ""]) == 2
    assert capsys.readouterr().err.splitlines() == ["rnnlab-tui: --output must name a folder"]
    assert os.listdir(tmp_path) == []
