"""Commands: what the TUI (or a test) asks of a running engine, one JSON object per line on the
engine's standard input. The engine answers with events (``engine/events.py``): a Settings event for
a setting it applied, a Notice for one it refused.

Pure Python, like the events: both sides import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .events import Message, from_dict, loads, registered

COMMAND_TYPES: dict[str, type["Command"]] = {}


@dataclass(frozen=True)
class Command(Message):
    pass


command = registered(COMMAND_TYPES)


@command("set_clip")
@dataclass(frozen=True)
class SetClip(Command):
    on: bool = True
    max_norm: float | None = None  # None keeps the current threshold
    norm_type: str | None = None  # "2", "1" or "inf"; None keeps the current one


@command("set_lr")
@dataclass(frozen=True)
class SetLr(Command):
    lr: float = 0.0


@command("pause")
@dataclass(frozen=True)
class Pause(Command):
    pass


@command("resume")
@dataclass(frozen=True)
class Resume(Command):
    pass


@command("step")
@dataclass(frozen=True)
class StepCommand(Command):
    n: int = 1  # run n steps, then pause


@command("rewind")
@dataclass(frozen=True)
class Rewind(Command):
    pass


@command("set_speed")
@dataclass(frozen=True)
class SetSpeed(Command):
    steps_per_s: float = 0.0  # 0 = unlimited


@command("gates")
@dataclass(frozen=True)
class GatesCommand(Command):
    input: str = ""  # digits ("6 7 0 0 1") or a text prefix, shown from now on; "" = refresh what is shown


@command("predict")
@dataclass(frozen=True)
class Predict(Command):
    input: str = ""


@command("generate")
@dataclass(frozen=True)
class Generate(Command):
    prefix: str = ""
    length: int = 100
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = all characters
    seed: int | None = None
    request_id: int = 0


@command("use_weights")
@dataclass(frozen=True)
class UseWeights(Command):
    """After the run: answer the console with the final weights or the best dev checkpoint's."""

    which: str = "best"  # best | final


@command("fork")
@dataclass(frozen=True)
class Fork(Command):
    """Fork the run at this step into two branches trained in lockstep from the same weights,
    optimiser state and batches; the second differs in one setting."""

    setting: str = "clip"  # clip (None = off) | max_norm (clipping on at it) | lr
    value: float | None = None

    SETTINGS: ClassVar[tuple[str, ...]] = ("clip", "max_norm", "lr")

    @classmethod
    def parse(cls, text: str) -> "Fork":
        """``clip=1``, ``clip=none``, ``max_norm=5`` or ``lr=0.1``; ValueError says what is wrong, in one line."""
        name, equals, value = text.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not equals or name not in cls.SETTINGS:
            raise ValueError(f"a fork changes clip=MAX_NORM, clip=none, max_norm=MAX_NORM or lr=LR, not {text!r}")
        if name == "clip" and value.lower() in ("none", "off"):
            return cls(setting="clip", value=None)
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"the fork's {name}= takes a number, not {value!r}") from None
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"the fork's {name}= must be a positive number, not {value}")
        return cls(setting=name, value=number)

    def describe(self) -> str:
        """What the second branch changes, as the header says it: clip 1, clip off, lr 0.1."""
        if self.setting == "lr":
            return f"lr {self.value:g}"
        return "clip off" if self.value is None else f"clip {self.value:g}"


@command("stop")
@dataclass(frozen=True)
class Stop(Command):
    pass


def command_from_json(line: str | bytes) -> Command:
    return from_dict(loads(line), COMMAND_TYPES)  # type: ignore[return-value]
