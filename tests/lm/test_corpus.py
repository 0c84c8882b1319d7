"""Reading the corpora, the character vocabulary and d2l's two samplers."""

from __future__ import annotations

import os
import random

import pytest
import torch

from engine.config import DATA_ROOT
from engine.corpus import (UNKNOWN, Vocabulary, decode, gutenberg_body, num_batches, read_corpus,
                           seq_data_iter_random, seq_data_iter_sequential, split_text)
from engine.data import DataError


def test_bom_and_crlf_are_handled(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes("\ufeffThe Time Traveller\r\nwas here.\rEnd\r\n".encode("utf-8"))
    assert read_corpus(str(path)) == "The Time Traveller\nwas here.\nEnd\n"


def test_undecodable_bytes_are_rejected_with_their_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("time traveller ".encode() + "café".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        read_corpus(str(path))
    message = str(caught.value)
    assert "byte offset 18" in message and "0xe9" in message and "\n" not in message


def test_gutenberg_header_and_licence_are_cut():
    raw = ("\ufeffThe Project Gutenberg EBook\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n\r\n"
           "Chapter I\r\nText.\r\n\r\nEnd of Project Gutenberg's X\r\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\n"
           "licence\r\n").encode()
    assert gutenberg_body(decode(raw)) == "Chapter I\nText.\n"


def test_shipped_corpora(timemachine_text):
    assert timemachine_text.startswith("The Time Machine, by H. G. Wells")
    assert "Gutenberg" not in timemachine_text and "\r" not in timemachine_text
    assert timemachine_text.rstrip().endswith("of man.")
    with open(os.path.join(DATA_ROOT, "corpus", "NOTICE"), encoding="utf-8") as handle:
        notice = handle.read()
    assert "Copyright (c) 2016 JackeyGao" in notice and "MIT License" in notice
    poems = read_corpus(os.path.join(DATA_ROOT, "corpus", "tangshi300.txt"))
    assert len(poems) == 27_703 and "床前明月光" in poems


def test_vocabulary_round_trip(timemachine_text):
    vocab = Vocabulary(timemachine_text)
    assert vocab.idx_to_token[0] == UNKNOWN and vocab.idx_to_token[1] == " "  # then by frequency
    assert len(vocab) == 71  # 70 characters and <unk>
    sample = timemachine_text[:2000]
    assert vocab.decode(vocab.encode(sample)) == sample
    again = Vocabulary(tokens=vocab.idx_to_token)  # as a checkpoint restores it
    assert again.encode(sample) == vocab.encode(sample)


def test_unknown_characters_map_to_unk():
    vocab = Vocabulary("time traveller")
    assert vocab.encode("time 旅") == vocab.encode("time ") + [vocab.unk]
    assert vocab.unknown_in("旅time旅X") == ["旅", "X"]
    assert vocab.decode(vocab.encode("旅")) == UNKNOWN


def test_split_holds_out_the_last_tenth_at_line_ends_half_for_dev_half_for_test(timemachine_text):
    train, dev, test = split_text(timemachine_text)
    assert train + dev + test == timemachine_text and train.endswith("\n") and dev.endswith("\n")
    assert abs(len(dev + test) / len(timemachine_text) - 0.1) < 0.01
    assert abs(len(dev) - len(test)) < 0.01 * len(timemachine_text)
    assert [len(part) for part in split_text("x" * 100)] == [90, 5, 5]  # no line end: cut mid-line


def _positions(batches):
    return [x.tolist() for x, _ in batches]


@pytest.mark.parametrize("sampler", [seq_data_iter_random, seq_data_iter_sequential])
def test_samplers_cover_the_corpus_as_d2l(sampler):
    corpus = torch.arange(103)  # each token is its own position
    batch_size, num_steps = 2, 5
    union = set()
    for epoch in range(40):
        seen = []
        for X, Y in sampler(corpus, batch_size, num_steps, random.Random(epoch)):
            assert X.shape == Y.shape == (batch_size, num_steps)
            assert torch.equal(Y, X + 1)  # the label is the next character
            seen += X.flatten().tolist()
        assert len(seen) == len(set(seen))  # an epoch never repeats a position
        for start in range(0, len(seen), num_steps):  # each subsequence is a contiguous run
            run = seen[start:start + num_steps]
            assert run == list(range(run[0], run[0] + num_steps))
        union |= set(seen)
    assert union == set(range(102))  # every position with a next character appears


def test_sequential_batches_continue_row_by_row():
    corpus = torch.arange(200)
    batches = list(seq_data_iter_sequential(corpus, 4, 6, random.Random(1)))
    for previous, following in zip(batches, batches[1:]):
        assert torch.equal(following[0][:, 0], previous[0][:, -1] + 1)  # row r goes on where it stopped


def test_random_batches_are_not_continuations():
    corpus = torch.arange(400)
    batches = list(seq_data_iter_random(corpus, 4, 6, random.Random(1)))
    continued = sum(int(torch.equal(b[0][:, 0], a[0][:, -1] + 1)) for a, b in zip(batches, batches[1:]))
    assert continued == 0


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_every_epoch_has_the_same_number_of_batches(sampling):
    corpus = torch.arange(1000)
    sampler = seq_data_iter_sequential if sampling == "sequential" else seq_data_iter_random
    expected = num_batches(len(corpus), 8, 7, sampling)
    counts = {len(list(sampler(corpus, 8, 7, random.Random(seed), limit=expected))) for seed in range(50)}
    assert counts == {expected}
