"""Continue a prefix with a character language model (d2l's ``predict_ch8``), one character at a time.

The state is warmed up on the prefix once; then each new character costs one step of the network fed
the previous character and the carried state. The prefix is never run again, so the time per character
does not depend on how long the prefix or the output is.

``rnnlab-tui generate --checkpoint ... --prefix "time traveller" --length 100`` prints the prefix
followed by its continuation, as ``predict_ch8`` returns it.
"""

from __future__ import annotations

import random
import sys
import time

import torch

from .corpus import UNKNOWN, Vocabulary
from .models import LanguageModel
from .sampling import MAX_SEED, check_sampling
from .text import visible

CHUNK = 4  # characters per Generation event: small enough to watch the text appear
MAX_LENGTH = 10_000

BIDIRECTIONAL_REFUSAL = (
    "a bidirectional model cannot generate: its backward layer learnt to read the characters that come "
    "after each position, which do not exist yet while generating, so it leans on context it will never "
    "have and repeats itself (the notebook's bidirectional GRU wrote 开始开始开始…); train without "
    "--bidirectional to generate")


def check_request(model, prefix: str, length: int, temperature: float, top_k: int, seed: int | None = None) -> None:
    """ValueError with one line for the user when the request cannot be answered."""
    if getattr(model, "bidirectional", False):
        raise ValueError(BIDIRECTIONAL_REFUSAL)
    if not prefix:
        raise ValueError("give a prefix of at least one character to continue")
    if not 0 <= length <= MAX_LENGTH:
        raise ValueError(f"the length must be between 0 and {MAX_LENGTH}, not {length}")
    check_sampling(temperature, top_k, seed)


def choose(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> int:
    """logits [vocab] -> the next character's index: argmax when temperature is 0, else a draw from
    softmax(logits / temperature), restricted to the top_k likeliest when top_k > 0."""
    logits = logits.clone()
    logits[Vocabulary.unk] = -float("inf")  # <unk> stands for characters the text never holds
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits[logits < kth] = -float("inf")
    probabilities = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))


@torch.no_grad()
def continuation(model, vocab: Vocabulary, prefix: str, length: int, temperature: float = 0.0,
                 top_k: int = 0, seed: int | None = 0, device: torch.device | str = "cpu"):
    """Yield ``length`` characters that continue ``prefix``. Characters of the prefix outside the
    vocabulary are read as ``<unk>`` (``vocab.unknown_in(prefix)`` lists them for the caller)."""
    check_request(model, prefix, length, temperature, top_k, seed)
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed if seed is not None else random.SystemRandom().randrange(2**63))
    was_training = model.training
    model.eval()
    # One step is a few matrix-vector products: sharing them among threads costs more in
    # synchronisation than it saves, and on a busy CPU waiting for the other thread dominates
    # (measured on 2 shared cores: 12-37 ms per character with 2 threads, 0.6 ms with one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokens = torch.tensor([vocab.encode(prefix)], dtype=torch.long, device=device)  # [1, prefix]
        # Warm-up: one pass over all but the last prefix character gives the state that reads it.
        state = model(tokens[:, :-1])[1] if tokens.shape[1] > 1 else None
        current = tokens[:, -1:]  # [1, 1]
        for _ in range(length):
            logits, state = model(current, state)  # [1, 1, vocab]: one step, the state carried
            index = choose(logits[0, -1], temperature, top_k, generator)
            current = torch.tensor([[index]], dtype=torch.long, device=device)
            yield vocab.idx_to_token[index]
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)


def predict(model, vocab: Vocabulary, prefix: str, length: int, **options) -> str:
    """d2l's predict_ch8: the prefix followed by ``length`` generated characters."""
    return prefix + "".join(continuation(model, vocab, prefix, length, **options))


def unknown_notice(unknown: list[str]) -> str:
    shown = " ".join(repr(char) for char in unknown)
    return f"not in the vocabulary, read as {UNKNOWN}: {shown}"


def stream_events(model, vocab: Vocabulary, command, emit, notice, device) -> None:
    """The app's answer to a Generate command: Generation events of CHUNK characters, then done=True.
    A request that cannot be answered gets one Notice instead."""
    from .events import Generation

    unknown = vocab.unknown_in(command.prefix)
    try:
        seed = None if command.seed is None else int(command.seed)
        characters = continuation(model, vocab, command.prefix, int(command.length), float(command.temperature),
                                  int(command.top_k), seed, device)
        chunk = ""
        first = next(characters, None)  # the request is checked when the first character is asked for
    except (TypeError, ValueError) as error:  # a command line can hold anything: one line, never a crash
        notice(str(error), "error")
        return
    if unknown:
        notice(unknown_notice(unknown), "warning")
    fields = dict(prefix=command.prefix, unknown=unknown, request_id=command.request_id)
    if first is not None:
        chunk = first
        for char in characters:
            if len(chunk) >= CHUNK:
                emit(Generation, text=chunk, done=False, **fields)
                chunk = ""
            chunk += char
    emit(Generation, text=chunk, done=True, **fields)


# --- speed ---------------------------------------------------------------


def measure_generation_speed(hidden: int = 256, repeats: int = 3) -> dict:
    """Milliseconds per generated character of a one-layer LSTM (torch cells, one-hot input over a
    Time Machine sized vocabulary), for a short and a long prefix and output. Plain floats, for
    ``rnnlab-tui bench``; the best of ``repeats`` runs, as timeit reports."""
    from .config import build_config

    config = build_config("lm-timemachine", hidden=hidden)
    vocab = Vocabulary("".join(chr(c) for c in range(32, 127)) + "\n")
    model = LanguageModel(config, len(vocab))
    short_prefix, long_prefix = "time traveller", "time traveller " * 150  # 14 and 2,250 characters

    def per_char(prefix: str, length: int) -> tuple[float, float]:
        """(ms per generated character, ms of the prefix warm-up), best of ``repeats``."""
        best_char = best_warm = float("inf")
        for _ in range(repeats):
            characters = continuation(model, vocab, prefix, length)
            started = time.perf_counter()
            next(characters)  # the warm-up and the first character
            warmed = time.perf_counter()
            count = sum(1 for _ in characters)
            done = time.perf_counter()
            best_char = min(best_char, (done - warmed) * 1000 / count)
            best_warm = min(best_warm, (warmed - started) * 1000)
        return best_char, best_warm

    list(continuation(model, vocab, short_prefix, 50))  # first-call costs out of the way
    short, short_warm = per_char(short_prefix, 200)
    long_prefix_ms, long_warm = per_char(long_prefix, 200)
    long_output, _ = per_char(short_prefix, 2000)
    return {"hidden": float(hidden), "ms_per_char": short, "ms_per_char_long_prefix": long_prefix_ms,
            "ms_per_char_long_output": long_output, "warmup_ms_short_prefix": short_warm,
            "warmup_ms_long_prefix": long_warm, "long_prefix_chars": float(len(long_prefix)),
            "long_output_chars": 2000.0}


# --- the command line ------------------------------------------------------


def load_generator(path: str):
    """(model, vocabulary, config) from a checkpoint; CheckpointError or ValueError with one line."""
    from .checkpoint import config_of, load, model_of

    payload = load(path)
    config = config_of(payload, path)
    if config.task != "lm":
        raise ValueError(f"{path}: a {config.task} checkpoint; generation needs a language model "
                         "(train one with --task lm)")
    model = model_of(payload, config, path)
    return model, Vocabulary(tokens=payload["vocabulary"]), config


def main(args) -> int:
    """``rnnlab-tui generate``: the prefix and its continuation on stdout; problems as one line, exit 2."""
    from .checkpoint import CheckpointError

    def fail(message: str) -> int:
        print(f"rnnlab-tui: {visible(message)}", file=sys.stderr)
        return 2

    if not 0 <= args.seed <= MAX_SEED:
        return fail(f"--seed must be between 0 and 2**64-1 (torch's seeds are 64-bit), not {args.seed}")
    try:
        model, vocab, config = load_generator(args.checkpoint)
        characters = continuation(model, vocab, args.prefix, args.length, args.temperature, args.top_k,
                                  args.seed)
        first = next(characters, "")  # checks the request before anything is printed
    except (CheckpointError, ValueError) as error:
        return fail(str(error))
    unknown = vocab.unknown_in(args.prefix)
    if unknown:
        print(f"rnnlab-tui: {visible(unknown_notice(unknown))}", file=sys.stderr)
    out = sys.stdout
    # a crafted vocabulary (or prefix) may hold escape sequences: shown, never obeyed
    out.write(visible(args.prefix + first, lines=True))
    out.flush()
    for char in characters:
        out.write(visible(char, lines=True))
        if char == "\n":
            out.flush()
    out.write("\n")
    out.flush()
    return 0
