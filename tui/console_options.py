"""The console's own settings, typed as a line that starts with a colon (no textual, no torch).

``:greedy`` and ``:sample`` choose how a language model's generation picks each character: the likeliest,
or a draw at a temperature from the k likeliest, seeded when a seed is given (the same seed and prefix
give the same text). After the run ``:best`` and ``:final`` choose which weights answer the console.
"""

from __future__ import annotations

from typing import NamedTuple

from engine.commands import UseWeights
from engine.config import PROBES
from engine.sampling import check_sampling

OPTIONS = ":greedy · :sample [t=1] [k=0] [seed=N] · :best · :final"
_NAMES = {"t": "temperature", "temperature": "temperature", "k": "top_k", "top_k": "top_k", "top-k": "top_k",
          "seed": "seed"}
_ORDER = ("temperature", "top_k", "seed")  # what bare values stand for: :sample 0.8 5 3


class Sampling(NamedTuple):
    """How the console's Generate requests choose characters (temperature 0: greedy)."""

    temperature: float = 0.0
    top_k: int = 0  # 0: all characters
    seed: int | None = None  # None: a fresh draw each time

    def describe(self) -> str:
        if not self.temperature:
            return "greedy"
        words = [f"sampling t={self.temperature:g}"]
        if self.top_k:
            words.append(f"k={self.top_k}")
        if self.seed is not None:
            words.append(f"seed={self.seed}")
        return " ".join(words)


GREEDY = Sampling()


def is_option(text: str) -> bool:
    return text.lstrip().startswith(":")


def parse_option(text: str, task: str, finished: bool) -> Sampling | UseWeights:
    """What a ``:`` line asks: a new way to sample, or (after the run) other weights. ValueError says,
    in one line, what is wrong."""
    name, *arguments = text.strip()[1:].split() or [""]
    name = name.lower()
    if name in ("best", "final") and not arguments:
        if not finished:
            raise ValueError(f":{name} chooses weights once the run has finished; while it trains the console "
                             "answers with the current ones")
        return UseWeights(which=name)
    if name in ("greedy", "sample"):
        if task != "lm":
            raise ValueError(f":{name} is for a language model's generation; a digit run predicts its sum")
        if name == "greedy":
            if arguments:
                raise ValueError(":greedy takes nothing after it (:sample t=0.8 k=5 samples)")
            return GREEDY
        return _sampling(arguments)
    raise ValueError(f"console options: {OPTIONS}")


def _sampling(arguments: list[str]) -> Sampling:
    """``:sample`` with ``t=``, ``k=`` and ``seed=`` (or bare values in that order); checked as the
    engine checks them."""
    given: dict[str, str] = {}
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if equals:
            name = _NAMES.get(key.lower())
            if name is None:
                raise ValueError(f":sample takes t=TEMPERATURE, k=TOP_K and seed=N, not {key!r}")
        else:
            name = next((name for name in _ORDER if name not in given), None)
            if name is None:
                raise ValueError(f":sample takes at most a temperature, a top-k and a seed, not {argument!r} too")
            value = argument
        given[name] = value
    try:
        temperature = float(given.get("temperature", "1"))
    except ValueError:
        raise ValueError(f"the temperature (t=) is a number, not {given['temperature']!r}") from None
    numbers = {}
    for name, label in (("top_k", "top-k (k=)"), ("seed", "seed")):
        if name in given:
            try:
                numbers[name] = int(given[name])
            except ValueError:
                raise ValueError(f"the {label} is a whole number, not {given[name]!r}") from None
    sampling = Sampling(temperature, numbers.get("top_k", 0), numbers.get("seed"))
    check_sampling(*sampling)
    return sampling


def placeholder(task: str, sampling: Sampling, weights: str, corpus: str = "") -> str:
    """The console's empty line: what to type, which weights answer (after the run) and, for a language
    model, how it chooses characters; the most telling first, as a narrow screen cuts the end."""
    if task == "lm":
        example = f", e.g. {PROBES[corpus]}" if corpus in PROBES else ""
        parts = ["/ then a prefix" if weights else f"/ then a prefix to continue{example}"]
    else:
        parts = ["/ then a digit sequence, e.g. 6 7 0 0 1"]
    if weights:
        parts.append(f"{weights} weights (:{'final' if weights == 'best' else 'best'})")
    if task == "lm":
        parts.append(f"{sampling.describe()} ({':greedy' if sampling.temperature else ':sample t=0.8 k=5'})")
    return " · ".join(parts)
