"""A made-up run shaped like the textbook's explosion, for tests, the benchmark and demos.

No torch: the numbers follow the story of NNDL 6.2.2 (norms rise by orders of magnitude within a
few steps, then collapse as the tanh units saturate) without training anything.
"""

from __future__ import annotations

import math
import random
from typing import Iterator

from engine.events import Alarm, Eval, Event, Gates, RunFinished, RunStarted, Settings, Status, Step

PARAMETERS = {
    "srn": {"W": [32, 32], "U": [32, 32], "b": [32]},
    "lstm": {f"{kind}_{gate}": ([32] if kind == "b" else [32, 32])
             for kind in ("W", "U", "b") for gate in ("i", "f", "o", "c")},
    "gru": {f"{kind}_{gate}": ([32] if kind == "b" else [32, 32])
            for kind in ("W", "U", "b") for gate in ("r", "z", "h")},
}
GATE_NAMES = {"srn": ("hidden",), "lstm": ("input_gate", "forget_gate", "output_gate", "cell_state", "hidden"),
              "gru": ("reset_gate", "update_gate", "candidate", "hidden")}
PROBE = "6 7 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"


def gates_event(cell: str, tokens: list[str], step: int = 0, request: str = "probe",
                hidden: int = 32, seed: int = 0) -> Gates:
    rng = random.Random(seed)
    matrices = {}
    for name in GATE_NAMES[cell]:
        signed = name in ("cell_state", "hidden", "candidate")
        matrices[name] = [[round(rng.uniform(-1, 1) if signed else rng.random(), 3) for _ in tokens]
                          for _ in range(hidden)]
    return Gates(run="synthetic", step=step, tokens=list(tokens), cell=cell, matrices=matrices, request=request)


def synthetic_events(n_steps: int = 250, cell: str = "srn", alarm_step: int = 3, steps_per_epoch: int = 5,
                     task: str = "digits", finish: bool = True, seed: int = 0) -> Iterator[Event]:
    rng = random.Random(seed)
    parameters = dict(PARAMETERS[cell])
    parameters.update({"embedding": [10, 32], "linear.weight": [19, 32], "linear.bias": [19]})
    config = {"task": task, "cell": cell, "impl": "torch", "optimizer": "sgd", "lr": 0.2, "length": 20,
              "clip": None, "clip_type": "2", "batch_size": 64, "epochs": max(1, n_steps // steps_per_epoch),
              "loss_reduction": "sum"}
    settings = dict(clip_on=False, clip_max_norm=20.0, clip_norm_type="2", lr=0.2, speed=0.0)
    yield RunStarted(run="synthetic", config=config, parameters=parameters, total_steps=n_steps,
                     steps_per_epoch=steps_per_epoch, dataset={"train": 300, "dev": 100, "test": 100},
                     settings=settings)
    yield Settings(run="synthetic", **settings)
    yield Status(run="synthetic", state="running")
    tokens = PROBE.split()
    best = 0.0
    for step in range(1, n_steps + 1):
        t = step * 0.004
        if step < alarm_step:
            scale = 10.0 ** step
        elif step < alarm_step + 3:
            scale = 10.0 ** (alarm_step + 3)
        else:
            scale = 1e-6  # saturated: the gradients collapse
        norms = {name: scale * (0.5 + rng.random()) for name in parameters}
        total = math.sqrt(sum(value * value for value in norms.values()))
        yield Step(run="synthetic", step=step, t=t, epoch=(step - 1) // steps_per_epoch + 1,
                   loss=150.0 / (1 + 0.01 * step) + rng.random(), grad_norms=norms, total_norm=total,
                   steps_per_s=250.0)
        if step == alarm_step:
            median = 10.0 ** (alarm_step - 2)
            yield Alarm(run="synthetic", step=step, t=t, kind="explosion", parameter="W",
                        value=norms["W"] if "W" in norms else total, ratio=norms.get("W", total) / median,
                        median=median)
        if step % steps_per_epoch == 0:
            accuracy = min(1.0, 0.05 + 0.9 * step / n_steps + 0.02 * rng.random())
            best = max(best, accuracy)
            yield Eval(run="synthetic", step=step, t=t, split="dev", accuracy=accuracy,
                       loss=2.0, is_best=accuracy >= best, best=best)
            yield gates_event(cell, tokens, step=step, seed=step)
    if finish:
        yield Status(run="synthetic", step=n_steps, state="finished")
        yield RunFinished(run="synthetic", step=n_steps, reason="finished", best_dev=best)


def write_log(path: str, events) -> int:
    """Write events as a JSON-lines log; returns how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for event in events:
            handle.write(event.to_json() + "\n")
            count += 1
    return count
