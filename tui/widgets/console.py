"""The console: type a digit sequence (or, for a language model, a prefix) and read the answer."""

from __future__ import annotations

import collections

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from engine.events import Alarm, Eval, Event, Generation, Notice, Prediction, RunFinished, Status
from tui.format import finished_text, short

MAX_LINES = 200
MAX_DIGITS = 200


def parse_digits(text: str) -> list[str]:
    """The digits of a console line ("6 7 0 0 1", "67001" or "6,7,0"); ValueError says what is wrong."""
    cleaned = text.replace(",", " ").strip()
    if not cleaned:
        raise ValueError("type a digit sequence, e.g. 6 7 0 0 1 (the model predicts 6+7)")
    parts = cleaned.split()
    digits = list(parts[0]) if len(parts) == 1 else parts
    bad = next((part for part in digits if len(part) != 1 or part not in "0123456789"), None)
    if bad is not None:
        raise ValueError(f"{bad!r} is not a digit 0-9: type digits separated by spaces, e.g. 6 7 0 0 1")
    if len(digits) < 2:
        raise ValueError("type at least two digits: the label is the sum of the first two")
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"at most {MAX_DIGITS} digits, not {len(digits)}")
    return digits


def prediction_text(prediction: Prediction) -> Text:
    tokens = " ".join(str(token) for token in prediction.tokens)
    predicted = prediction.predicted
    shown = str(int(predicted)) if float(predicted).is_integer() else f"{predicted:.3f}"
    text = Text(f"{tokens} → ", "bold")
    text.append(shown, "bold green")
    if prediction.top:
        text.append("   top-3: ")
        text.append("  ".join(f"{label} {probability:.0%}" for label, probability in prediction.top[:3]))
    if prediction.target is not None:
        right = round(float(predicted)) == prediction.target
        text.append(f"   sum {prediction.target} ")
        text.append("✓" if right else "✗", "green" if right else "red")
    return text


class Console(Vertical):
    """An input line over a short log. Submitting posts ``Console.Submitted`` to the screen."""

    DEFAULT_CSS = """
    Console { height: auto; }
    Console > #console-log { height: auto; max-height: 4; }
    """

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, placeholder: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: collections.deque[Text] = collections.deque(maxlen=MAX_LINES)
        self._streaming = False
        self._log = Static("", id="console-log")
        self._input = Input(placeholder=placeholder, id="console-input")

    def compose(self) -> ComposeResult:
        yield self._log
        yield self._input

    def set_placeholder(self, placeholder: str) -> None:
        field = self._input
        if field.placeholder != placeholder:
            field.placeholder = placeholder

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.value = ""
        self.post_message(self.Submitted(event.value))

    def show_event(self, event: Event) -> None:
        """An engine answer or a milestone, as one line (generation streams into the last one)."""
        if isinstance(event, Prediction):
            self.say(prediction_text(event))
        elif isinstance(event, Generation):
            self.stream(event.text, event.done)
        elif isinstance(event, Notice):
            self.say(f"engine: {event.message}", "red" if event.level == "error" else "")
        elif isinstance(event, Alarm):
            self.say(f"step {event.step}: healthy again {event.message}".rstrip(), "green")
        elif isinstance(event, Status) and event.message:
            self.say(f"{event.state}: {event.message}", "bold red" if event.state == "failed" else "")
        elif isinstance(event, Eval):
            score = event.accuracy if event.accuracy is not None else event.perplexity
            self.say(f"step {event.step}: {event.split} score {short(score)}")
        elif isinstance(event, RunFinished):
            self.say(finished_text(event))

    def say(self, message: str | Text, style: str = "") -> None:
        """Add one line (cut to a line: the console answers in one line, never a traceback)."""
        text = message if isinstance(message, Text) else Text(str(message).splitlines()[0] if message else "", style)
        self._streaming = False
        self.lines.append(text)
        self._draw()

    def stream(self, chunk: str, done: bool = False) -> None:
        """Append generated characters to the current line (wide characters are laid out by rich)."""
        if not self._streaming:
            self.lines.append(Text("» ", "bold"))
            self._streaming = True
        self.lines[-1].append(chunk.replace("\n", " ⏎ "))
        if done:
            self._streaming = False
        self._draw()

    def _draw(self) -> None:
        self._log.update(Text("\n").join(list(self.lines)[-4:]))
