"""``rnnlab-tui gates``: a checkpoint's gate heatmaps for one input, as ASCII shading.

Rows are hidden units, columns time steps labelled by the input tokens; each heatmap has a legend
that maps the shading ramp to its value range.
"""

from __future__ import annotations

import math
import sys

import torch
from rich.cells import cell_len

from . import checkpoint as ckpt
from . import instruments
from .config import TrainConfig
from .corpus import UNKNOWN, Vocabulary
from .digits import pad_digits, parse_digits
from .generate import unknown_notice
from .text import visible

RAMP = " .:-=+*#%@"  # low -> high
TITLES = {"input_gate": "input gate i_t", "forget_gate": "forget gate f_t", "output_gate": "output gate o_t",
          "cell_state": "cell state c_t", "reset_gate": "reset gate r_t", "update_gate": "update gate z_t",
          "candidate": "candidate h~_t", "hidden": "hidden state h_t"}
MAX_INPUT = 64  # characters of a prefix: one heatmap column each (the TUI's console asks for as many)
SHOWN = {"lstm": ("input_gate", "forget_gate", "output_gate", "cell_state"),
         "gru": ("reset_gate", "update_gate", "candidate", "hidden"), "srn": ("hidden",)}


def render(name: str, matrix: list[list[float]], tokens: list[str], color: bool = False) -> list[str]:
    """One heatmap: a title, a header of input tokens, one row per hidden unit, a legend. A column is
    as wide as the widest token in terminal cells (a Chinese character takes two) and one more."""
    values = [v for row in matrix for v in row]
    low, high = min(values), max(values)
    span = high - low or 1.0
    width = max(2, max(cell_len(token) for token in tokens) + 1)
    lines = [f"{TITLES.get(name, name)}   ({len(matrix)} units x {len(tokens)} steps)"]
    lines.append("      " + "".join(" " * (width - cell_len(token)) + token for token in tokens))
    for unit, row in enumerate(matrix):
        cells = []
        for value in row:
            level = min(len(RAMP) - 1, int((value - low) / span * (len(RAMP) - 1) + 0.5))
            shade = RAMP[level] * width
            if color:
                shade = f"[{_colour(level)}]{shade}[/]"
            cells.append(shade)
        lines.append(f"  {unit:3d} " + "".join(cells))
    steps = len(RAMP) - 1
    legend = "  ".join(f"'{RAMP[i]}'={low + span * i / steps:.2f}" for i in (0, steps // 3, 2 * steps // 3, steps))
    lines.append(f"      legend: {legend}   (min {low:.3f}, max {high:.3f})")
    return lines


def _markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _colour(level: int) -> str:
    palette = ("grey15", "grey30", "blue", "dodger_blue2", "cyan", "green", "yellow", "orange1", "red", "bright_red")
    return palette[level]


def input_indices(config: TrainConfig, payload: dict, text: str) -> tuple[list[int], list[str], list[str]]:
    """The model's input for ``text``: its indices, its tokens (the columns) and the characters a
    language model reads as <unk>."""
    if config.task == "lm":
        if not text:
            raise ValueError("give --input, a text prefix for the language model")
        if len(text) > MAX_INPUT:
            raise ValueError(f"--input is at most {MAX_INPUT} characters (one heatmap column each), not {len(text):,}")
        vocabulary = Vocabulary(tokens=payload.get("vocabulary") or [UNKNOWN])
        return vocabulary.encode(text), list(text), vocabulary.unknown_in(text)
    digits = pad_digits(parse_digits(text or config.probe, config.length), config.length)
    return digits, [str(d) for d in digits], []


def print_gates(path: str, text: str = "", color: bool = False, stream=None) -> int:
    stream = stream or sys.stdout
    payload = ckpt.load(path)
    config = ckpt.config_of(payload, path)
    model = ckpt.model_of(payload, config, path)  # checks the vocabulary the input is read with
    indices, tokens, unknown = input_indices(config, payload, text)
    if unknown:  # as generate says it: these columns show the model reading <unk>
        print(f"rnnlab-tui: {visible(unknown_notice(unknown))}", file=sys.stderr)
    model.eval()
    matrices = model.record_gates(torch.tensor(indices, dtype=torch.long))
    # the path, the step and the input come from the user or the file: shown with their control
    # characters made visible (a space as ␣, or its column would have no label), and (in colour)
    # with rich's markup escaped
    shield = _markup_escape if color else str
    tokens = [shield(visible(token).replace(" ", "␣")) for token in tokens]
    shown = repr(text) if config.task == "lm" else " ".join(tokens)
    lines = [shield(visible(f"{config.cell.upper()} ({config.impl}) from {path}, step {payload.get('step', '?')}, "
                            f"input: {shown}")), ""]
    for name in SHOWN[config.cell]:
        lines += render(name, matrices[name].tolist(), tokens, color) + [""]
    lines += flow_report(model, config, payload.get("vocabulary") or [])
    if color:
        from rich.console import Console

        console = Console(file=stream, highlight=False)
        for line in lines:
            console.print(line)
    else:
        stream.write("\n".join(lines) + "\n")
    return 0


def flow_report(model, config: TrainConfig, vocabulary: list) -> list[str]:
    """‖∂L/∂h_t‖ for every time step on the dev set (one batch), and Pascanu's gauge; one line
    instead when the run's dev set cannot be read here or its vocabulary is not the checkpoint's."""
    from .tasks import make_task

    try:
        task = make_task(config, torch.device("cpu"))
    except (OSError, ValueError) as error:
        return [f"gradient flow through time: the run's dev set cannot be read here ({visible(str(error))})"]
    if list(task.vocabulary) != list(vocabulary):
        return ["gradient flow through time: the run's dev set here has another vocabulary than the checkpoint"]
    flow = instruments.measure_flow(model, task, task.batch_of("dev"))
    norms = flow["grad_h_norms"]
    positive = [value for value in norms if math.isfinite(value) and value > 0]
    low, high = (math.log10(min(positive)), math.log10(max(positive))) if positive else (0.0, 0.0)
    scale = f"bars on a log scale from {min(positive):.3e} to {max(positive):.3e}" if positive else "all zero"
    lines = [f"gradient flow through time on the dev set: ‖∂L/∂h_t‖ ({scale})"]
    for t, value in enumerate(norms, 1):
        bar = ""
        if math.isfinite(value) and value > 0:
            bar = "#" * (1 + int(39 * (math.log10(value) - low) / (high - low))) if high > low else "#" * 40
        lines.append(f"  t={t:<3d} {value:10.3e}  {bar}")
    lines.append(f"  ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = {flow['ratio']:.3g}")
    lines.append("")
    lines.append("Pascanu's gauge: σ_max(U) against 1/γ (γ = 1 for tanh, 1/4 for a sigmoid gate)")
    for name, value in flow["sigma_max"].items():
        bound = flow["inverse_gamma"][name]
        lines.append(f"  σ_max({name}) = {value:.4g} {'>' if value > bound else '<'} 1/γ = {bound:g}")
    lines.append(f"  σ_max(∂h_T/∂h_{{T-1}}) = {flow['jacobian_sigma_max']:.4g} "
                 f"(the step Jacobian, mean over {instruments.JACOBIAN_EXAMPLES} examples)")
    return lines
