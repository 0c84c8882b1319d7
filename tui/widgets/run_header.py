"""The header: what is training, how clipping is set, where the run is and how fast it goes."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.text import visible
from tui.format import norm_name, short
from tui.state import RunView

STATE_STYLES = {"running": "bold green", "paused": "bold yellow", "finished": "bold cyan",
                "stopped": "bold cyan", "failed": "bold red", "waiting": "dim", "stopping": "bold yellow",
                "cut off": "bold red"}


def header_text(view: RunView, source: str, note: str = "", clip_keys: bool = True) -> Text:
    config = view.config
    if not config:
        waiting = Text(" waiting for the run to start", "bold")
        waiting.append(" (the engine loads torch first)" if source.startswith("live") else "", "dim")
        waiting.append(f"\n {view.state} · {source}", "dim")
        if note:
            waiting.append(f" · {note}", "bold yellow")
        return waiting
    settings = view.settings
    cell = str(config.get("cell", "?")).upper()
    impl = str(config.get("impl", ""))
    task = str(config.get("task", "?"))
    line = Text()
    line.append(f" {cell}", "bold")
    if impl:
        line.append(f" ({impl})", "dim")
    line.append(f" · {task}")
    if task == "digits" and config.get("length"):
        line.append(f" L={config['length']}")
    elif task == "lm" and config.get("corpus"):
        line.append(f" {config['corpus']}")
    lr = settings.lr if settings is not None else config.get("lr")
    speed = settings.speed if settings is not None else 0.0
    line.append(f" · {config.get('optimizer', '?')} lr {short(lr)}")
    line.append(" · clip ")
    if settings is None:
        clip_on = config.get("clip") is not None
        max_norm, norm_type = config.get("clip"), config.get("clip_type", "2")
    else:
        clip_on, max_norm, norm_type = settings.clip_on, settings.clip_max_norm, settings.clip_norm_type
    if clip_on:
        line.append(f"ON max_norm={short(max_norm)} {norm_name(norm_type)}", "bold green")
    else:
        line.append("OFF", "bold red")
        if max_norm and clip_keys:  # what c switches on, which [ and ] change meanwhile
            line.append(f" (c: max_norm={short(max_norm)})", "dim")
    line.append("\n")
    total = view.total_steps
    line.append(f" step {view.step}" + (f"/{total}" if total else ""))
    if view.epoch and config.get("epochs"):
        line.append(f" · epoch {view.epoch}/{config['epochs']}")
    cap = f"cap {short(speed)}/s" if speed else "no cap"
    if view.state == "running":  # paused or ended, the last rate measured is no rate of now
        line.append(f" · {view.steps_per_s:.1f} steps/s")
        line.append(f" ({cap})", "dim")
    else:
        line.append(f" · {cap}", "dim")
    line.append(" · ")
    line.append(view.state, STATE_STYLES.get(view.state, "bold"))
    line.append(f" · {source}", "dim")
    if note:
        line.append(f" · {note}", "bold yellow")
    return line


def legend_text(entries) -> Text:
    """One line per overlaid run: its colour and letter, what differs, where it is, which branch of a
    live fork the clip keys steer, then its id (the part a narrow terminal cuts)."""
    text = Text()
    for entry in entries:
        text.append("\n")
        text.append("▶" if entry.front else " ", "bold")
        text.append(f"━{entry.letter} ", f"bold color({entry.colour})")
        if entry.differences:
            text.append(visible(" · ".join(entry.differences)) + " · ", f"color({entry.colour})")
        text.append(f"step {entry.step} · ")
        text.append(entry.state, STATE_STYLES.get(entry.state, "bold"))
        if entry.steered:
            text.append(" · steered by c [ ] a", "bold")
        text.append(" · " + visible(entry.run), "bold" if entry.front else "dim")
    return text


class RunHeader(Widget):
    """Two lines of fixed height, and one a run when several are overlaid: redrawn each frame without
    a new layout (Static.update asks for one)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._text = Text()

    def show(self, view: RunView, source: str, note: str = "", entries=(), clip_keys: bool = True) -> None:
        text = header_text(view, source, note, clip_keys)
        if entries:
            text.append_text(legend_text(entries))  # one line a run, cut at the edge (app.tcss)
        if text != self._text:
            self._text = text
            self.refresh()

    def render(self) -> Text:
        return self._text


def source_label(source, playback, ended: bool = False) -> str:
    """Where the events come from; for a replay, whether it plays and how fast."""
    if source.kind == "stream" and ended:
        return "stream ended"
    if source.kind != "replay":
        return visible(source.description) + ("" if playback.index is None else " · history (end follows)")
    # the playback first: a narrow terminal cuts the log's name, not that it is a replay or whether it plays
    playing = f"▶ replay {playback.speed:g}/s" if playback.playing else "⏸ replay"
    return f"{playing} · {visible(source.description)}"
