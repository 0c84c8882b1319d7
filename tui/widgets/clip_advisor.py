"""The clipping advisor (Pascanu, Mikolov & Bengio 2013, §3.2): what threshold the run's own norms
suggest, how much clipping is doing, and the step's norm before and after it."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from tui.advisor import BAND, MIN_STABLE, Advice
from tui.format import longest_that_fits
from tui.state import RunView
from tui.story import compact

NORM_WORDS = {"2": "L2 norm", "1": "L1 norm (sum of |g|)", "inf": "L∞ norm (largest |g|)"}


def advisor_text(view: RunView, width: int, keys: bool = True) -> Text:
    """Two lines: the advice (average, band, suggestion), then what clipping does at this step.
    ``keys``: the clip keys can act (a live run still training), so the advice names them."""
    settings, advice = view.settings, view.advice
    norm_type = settings.clip_norm_type if settings is not None else str(view.config.get("clip_type", "2"))
    words = NORM_WORDS.get(norm_type, f"L{norm_type} norm")
    name = "L∞" if norm_type == "inf" else f"L{norm_type}"
    text = Text()
    if advice is None or advice.suggestion is None:
        text.append("clip advisor: ", "bold")
        text.append(f"waiting for healthy steps · total = {words} of all gradients"[: max(0, width - 14)], "dim")
        return text
    low, high = advice.band
    long = (f"clip advisor (Pascanu et al. 2013): avg pre-clip {name} total {compact(advice.average)} over "
            f"{advice.healthy} healthy steps · converges for max_norm {compact(low)}–{compact(high)} "
            f"({BAND[0]:g}–{BAND[1]:g}×) · ")
    short = (f"advisor: avg {name} {compact(advice.average)} ({advice.healthy} healthy) · "
             f"{compact(low)}–{compact(high)} · ")
    key = f"a: clip at {advice.suggestion:g}" if keys else f"suggests {advice.suggestion:g}"
    text.append(long if len(long) + len(key) <= width else short)
    text.append(key, "bold cyan")
    if not advice.stable:  # Pascanu's band is for a run that was converging; this one was not
        text.append("\n" + _unstable(advice, width, keys), "bold yellow")
    text.append("\n")
    total = view.pre_clip
    ran = view.step_settings
    if settings is not None and ran is not None and _clipping(ran) != _clipping(settings):
        # changed since the step shown (at a pause): its norms are from before the change
        text.append(f"clip {'ON ' + format(settings.clip_max_norm, 'g') if settings.clip_on else 'OFF'} from the "
                    "next step: ", "bold green" if settings.clip_on else "bold red")
        ran_with = f"step {view.step} ran with clip {ran.clip_max_norm:g}" if ran.clip_on else f"step {view.step} ran unclipped"
        norms = f"pre {compact(total)} → post {compact(total * view.clip_factor)}" if ran.clip_on else f"pre {compact(total)}"
        text.append(longest_that_fits((f"{ran_with}: {norms}", ran_with), _room_left(text, width)))
    elif settings is not None and settings.clip_on:
        label = f"clip ON {settings.clip_max_norm:g}{_against_band(settings.clip_max_norm, advice)}: "
        detail = f"pre {compact(total)} → post {compact(total * view.clip_factor)} · clipped {advice.clipped_share:.0%}"
        span = f" of the last {advice.steps} steps"
        if len(label) + len(detail) + len(span) <= width:  # the first words to go when the line is too wide
            detail += span
        text.append(label, "bold green")
        text.append(detail)
    else:
        text.append("clip OFF: ", "bold red")
        text.append(f"pre {compact(total)} = post (nothing scales it)")
    rest = _room_left(text, width)
    if rest > len(words) + 11:
        text.append(f" · total = {words}", "dim")
    return text


def _room_left(text: Text, width: int) -> int:
    """The cells left on the text's last line."""
    return width - cell_len(text.plain[text.plain.rindex("\n") + 1:])


def _clipping(settings) -> float | None:
    """The threshold a step is clipped at, None when clipping is off (max_norm is then only kept)."""
    return settings.clip_max_norm if settings.clip_on else None


def _against_band(max_norm: float, advice: Advice) -> str:
    """Where the threshold in force stands against the band, once the band speaks of a stable phase:
    the suggestion beside it may be far from the threshold that clipping uses now."""
    if not advice.stable:
        return ""
    low, high = advice.band
    return " (below the band)" if max_norm < low else " (above the band)" if max_norm > high else " (in the band)"


def _unstable(advice: Advice, width: int, keys: bool) -> str:
    """Why the averaged steps are no stable phase, in the longest wording that fits ``width``."""
    halve = " · [ halves max_norm" if keys else ""
    if not advice.enough:
        steps = f"{advice.healthy} healthy step{'s' if advice.healthy != 1 else ''}"
        forms = (f"⚠ only {steps} averaged, {MIN_STABLE} make a stable phase: the band is a guess{halve}",
                 f"⚠ only {steps} ({MIN_STABLE} needed): the band is a guess")
    else:
        rise = compact(advice.loss_rise, 2)
        forms = (f"⚠ the loss rose ×{rise} over those steps: no stable phase, the band may be far too high{halve}",
                 f"⚠ the loss rose ×{rise}: no stable phase, the band may be too high")
    return longest_that_fits(forms, width)


class ClipAdvisor(Widget):
    DEFAULT_CSS = """
    ClipAdvisor { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._text = Text()

    def show(self, view: RunView, keys: bool = True) -> None:
        text = advisor_text(view, self.content_size.width or 80, keys)
        if text != self._text:
            lines_changed = text.plain.count("\n") != self._text.plain.count("\n")
            self._text = text
            self.refresh(layout=lines_changed)  # a new layout only when its height changes

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._text.plain.count("\n") + 1

    def render(self) -> Text:
        return self._text
