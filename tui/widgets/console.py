"""The console: type a digit sequence (or, for a language model, a prefix) and read the answer."""

from __future__ import annotations

import collections

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from engine.digits import parse_digits as read_digits
from engine.events import Alarm, Eval, Event, Generation, Notice, Prediction, RunFinished, Status, Weights
from engine.text import visible
from tui.format import finished_text, short

MAX_LINES = 200
MAX_DIGITS = 200  # when the run does not say which length its model reads


def parse_digits(text: str, length: int | None = None) -> list[str]:
    """The digits of a console line, as the engine will read them for a model of sequences of
    ``length``; ValueError says what is wrong."""
    return [str(digit) for digit in read_digits(text, length or MAX_DIGITS)]


def prediction_text(prediction: Prediction, weights: str = "") -> Text:
    """One answer; after the run, led by the weights that gave it (final or best)."""
    tokens = " ".join(str(token) for token in prediction.tokens)
    predicted = prediction.predicted
    shown = str(int(predicted)) if float(predicted).is_integer() else f"{predicted:.3f}"
    text = weights_tag(weights)
    text.append(f"{tokens} → ", "bold")
    text.append(shown, "bold green")
    if prediction.top:
        text.append("   top-3: ")
        text.append("  ".join(f"{label} {probability:.0%}" for label, probability in prediction.top[:3]))
    if prediction.target is not None:
        right = round(float(predicted)) == prediction.target
        text.append(f"   sum {prediction.target} ")
        text.append("✓" if right else "✗", "green" if right else "red")
    return text


def weights_tag(weights: str) -> Text:
    return Text(f"{weights} · ", "dim") if weights else Text()


def weights_text(weights: Weights, score_name: str = "score") -> Text:
    """The line that says which weights answer from now on, and how to switch."""
    if weights.which == "best":
        score = "" if weights.score is None else f", dev {score_name} {short(weights.score)}"
        return Text(f"the best weights (step {weights.trained_steps}{score}) answer · :final switches back", "bold")
    # q typed in the console is a character: Esc leaves it first
    return Text(f"run over: the {weights.which} weights (step {weights.trained_steps}) answer · "
                ":best switches · Esc q quits", "bold")


class GenerationBlock(Text):
    """The console entry of one generation: the prefix (dim), then the continuation as it streams in."""

    continuation = ""  # the characters generated so far


UNKNOWN_NOTICE = "not in the vocabulary"  # how the engine's notice about unknown prefix characters starts
# visual lines of the log (answers, a generation) by narrow screen: what is left to the heatmaps of the input
ROWS = {False: (3, 5), True: (3, 4)}
GENERATION_LENGTH = 100  # characters the console asks for: a generation fits the log at 120 columns


class Console(Vertical):
    """An input line over a short log. Submitting posts ``Console.Submitted`` to the screen.

    The log keeps entries (one answer a line; a generation is one entry of several lines) and shows
    the newest ones that fit, wrapped by rich (which measures wide CJK characters as two cells)."""

    DEFAULT_CSS = """
    Console { height: auto; }
    Console > #console-log { height: auto; }
    """

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, placeholder: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: collections.deque[Text] = collections.deque(maxlen=MAX_LINES)
        self._generation: GenerationBlock | None = None  # the block still streaming, if any
        self._request = -1
        self._unknown_noted = False  # the engine's notice already named the unknown characters
        self._weights = ""  # after the run: the weights answering (each answer is led by it)
        self.score_name = "score"  # what the run's evaluations score (accuracy, perplexity): its task says
        self._width = 0
        self._log = Static("", id="console-log")
        self._own: collections.deque[Text] = collections.deque(maxlen=4)
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

    def on_resize(self) -> None:
        if self._log.size.width != self._width:  # rewrap for the new width
            self._draw()

    def show_event(self, event: Event, who: str = "") -> None:
        """An engine answer or a milestone, as one line (a generation streams into its own block);
        ``who``: the letter of its run when several share the console (a fork's branches)."""
        lead = f"{who}: " if who else ""
        if isinstance(event, Prediction):
            self.say(Text(lead) + prediction_text(event, self._weights))
            return
        if isinstance(event, Generation):
            self.stream(event, lead)
            return
        if isinstance(event, Notice):
            self._unknown_noted = event.message.startswith(UNKNOWN_NOTICE)
            self.say(f"{lead}engine: {event.message}", {"error": "red", "warning": "yellow"}.get(event.level, ""))
        elif isinstance(event, Alarm):
            self.say(f"{lead}step {event.step}: healthy again {event.message}".rstrip(), "green")
        elif isinstance(event, Status) and event.message:
            self.say(f"{lead}{event.state}: {event.message}", "bold red" if event.state == "failed" else "")
        elif isinstance(event, Eval):
            accuracy = event.accuracy is not None
            name, score = ("accuracy", event.accuracy) if accuracy else ("perplexity", event.perplexity)
            self.say(f"{lead}step {event.step}: {event.split} {name} {short(score)}")
        elif isinstance(event, RunFinished):
            self.say(lead + finished_text(event))
        elif isinstance(event, Weights):
            self._weights = event.which
            self.say(Text(lead) + weights_text(event, self.score_name))

    def replay(self, events: list[Event]) -> None:
        """Show what a replay's console had shown by its cursor (and nothing after it), then the
        monitor's own lines (skipped lines, refused keys)."""
        self.lines.clear()
        self._generation = None
        self._weights = ""
        for event in events[-MAX_LINES:]:
            self.show_event(event)
        self.lines.extend(self._own)
        self._draw()

    def say(self, message: str | Text, style: str = "") -> None:
        """Add one line (cut to a line: the console answers in one line, never a traceback)."""
        if not isinstance(message, Text):  # the text may quote a stream or a child's stderr
            message = Text(visible(str(message).splitlines()[0]) if message else "", style)
        text = message
        self.lines.append(text)
        self._draw()

    def note(self, message: str, style: str = "yellow") -> None:
        """A line of the monitor's own (a refused key, skipped lines): kept over a replay's redraw."""
        self.say(message, style)
        self._own.append(self.lines[-1])

    def stream(self, generation: Generation, lead: str = "") -> None:
        """The prefix (after ``lead``, the run's letter in a fork), then each chunk of new characters,
        with real line breaks; done ends the block."""
        if self._generation is None or generation.request_id != self._request:
            if generation.unknown and not self._unknown_noted:
                shown = " ".join(repr(char) for char in generation.unknown)
                self.say(f"{UNKNOWN_NOTICE}, read as unknown: {shown}", "yellow")
            self._unknown_noted = False
            self._generation = GenerationBlock(lead)
            self._generation.append_text(weights_tag(self._weights))
            self._generation.append(generation.prefix, "dim")
            self._request = generation.request_id
            self.lines.append(self._generation)
        self._generation.append(generation.text)
        self._generation.continuation += generation.text
        if generation.done:
            blanks = self._generation.continuation
            if not blanks.strip():  # shown as they are, a student would see nothing and think it failed
                self._generation.right_crop(len(blanks))
                self._generation.append(f" ({len(blanks)} blank characters: the likeliest this model knows so far)",
                                        "dim italic")
            self._generation = None
        self._draw()

    def _draw(self) -> None:
        self._width = self._log.size.width
        width = self._width or max(20, self.app.size.width - 2)
        narrow = self.screen.has_class("narrow") if self.is_attached else False
        answers, generation = ROWS[narrow]
        recent = list(self.lines)[-answers:]
        budget = generation if any(isinstance(entry, GenerationBlock) for entry in recent) else answers
        shown: list[Text] = []
        for entry in reversed(self.lines):
            room = budget - len(shown)
            if room <= 0:
                break
            lines = list(entry.wrap(self.app.console, width, overflow="fold"))
            if len(lines) > room and shown:  # an older entry that no longer fits is left out, not cut to a fragment
                break
            if len(lines) > room and isinstance(entry, GenerationBlock):
                # too many lines to show: the line breaks as ⏎ (as the heatmaps label them), the text flows
                flowed = entry.copy()
                flowed.plain = entry.plain.replace("\n", "⏎")  # one character for one: the styles stay put
                lines = list(flowed.wrap(self.app.console, width, overflow="fold"))
            if len(lines) > room and isinstance(entry, GenerationBlock) and room > 1:
                # a long generation keeps its beginning (the prefix) in view
                more = len(lines) - room + 1
                lines = lines[: room - 1] + [Text(f"… {more} more line{'s' if more > 1 else ''}", "dim")]
            shown[:0] = lines[-room:]
        self._log.update(Text("\n").join(shown))
