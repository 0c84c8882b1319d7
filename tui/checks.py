"""Whether an event's fields have the types the engine writes (a log can be edited by hand)."""

from __future__ import annotations

from engine.events import (Alarm, Eval, Event, Flow, Gates, Generation, Notice, Prediction, RunFinished, RunStarted,
                           Saturation, Settings, Status, Step, Weights)

_NUMBER = (int, float)


def _numbers(*values) -> bool:
    return all(isinstance(value, _NUMBER) for value in values)


def _optional_numbers(*values) -> bool:
    return all(value is None or isinstance(value, _NUMBER) for value in values)


def _number_dict(value) -> bool:
    return isinstance(value, dict) and _numbers(*value.values())


def well_typed(event: Event) -> bool:
    """Whether the fields the monitor draws have the types the engine writes (a log can be edited)."""
    if not isinstance(event.step, int):
        return False
    if type(event) is Step:  # the hot path: sum() type-checks every number at C speed
        norms = event.grad_norms
        if not isinstance(norms, dict):
            return False
        try:
            sum(norms.values(), event.loss + event.total_norm + event.steps_per_s + event.clip_factor + event.epoch)
        except TypeError:
            return False
        return True
    if isinstance(event, Alarm):
        return _numbers(event.value, event.ratio, event.median) and isinstance(event.kind, str) \
            and isinstance(event.parameter, str) and isinstance(event.message, str)
    if isinstance(event, Eval):
        return _optional_numbers(event.accuracy, event.perplexity, event.best) and isinstance(event.split, str)
    if isinstance(event, Settings):
        return _numbers(event.clip_max_norm, event.lr, event.speed) and isinstance(event.clip_norm_type, str) \
            and isinstance(event.cause, str)
    if isinstance(event, Status):
        return isinstance(event.state, str) and isinstance(event.message, str)
    if isinstance(event, RunStarted):
        return isinstance(event.config, dict) and isinstance(event.parameters, dict) \
            and _numbers(event.total_steps, event.steps_per_epoch)
    if isinstance(event, Flow):
        return isinstance(event.grad_h_norms, list) and _numbers(*event.grad_h_norms, event.ratio,
                                                                  event.jacobian_sigma_max) \
            and _number_dict(event.sigma_max) and _number_dict(event.inverse_gamma)
    if isinstance(event, Saturation):
        return _number_dict(event.low) and _number_dict(event.high) and _numbers(event.hidden_saturated)
    if isinstance(event, Gates):
        return isinstance(event.tokens, list) and isinstance(event.matrices, dict) and isinstance(event.cell, str)
    if isinstance(event, Prediction):
        return _numbers(event.predicted) and isinstance(event.tokens, list) and isinstance(event.top, list) \
            and all(isinstance(item, list) and len(item) == 2 and _numbers(item[1]) for item in event.top) \
            and _optional_numbers(event.target)
    if isinstance(event, Generation):
        return isinstance(event.text, str)
    if isinstance(event, Notice):
        return isinstance(event.message, str) and isinstance(event.level, str)
    if isinstance(event, Weights):
        return isinstance(event.which, str) and isinstance(event.checkpoint, str) \
            and _numbers(event.trained_steps) and _optional_numbers(event.score)
    if isinstance(event, RunFinished):
        return _optional_numbers(event.best_dev, event.test_accuracy, event.test_perplexity)
    return True
