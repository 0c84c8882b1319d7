"""The rescue preset, run as the TUI runs it up to its pause at the explosion (torch in the child, a few
seconds): a stable phase first, then the explosion, and the advisor's threshold inside Pascanu's band of
that phase. Both full arms (unclipped, and clipped at the advice from the explosion) are
``python tests/tui/rescue_arms.py``."""

import statistics

from tui.advisor import BAND

from rescue_arms import RescueRun


def test_the_rescue_preset_explodes_after_a_stable_phase_and_the_advice_lies_in_its_band(tmp_path):
    run = RescueRun(str(tmp_path))
    try:
        explosion = run.until_paused_at_explosion()
        advice = run.state.advisor.at(run.state.last_index)
    finally:
        run.close()
    steps = run.steps
    assert steps[-1].step == explosion.step  # paused right after the explosion's step
    # the stable phase: the steps from the first on whose loss stays below the first step's
    phase = []
    for step in steps:
        if step.loss > steps[0].loss:
            break
        phase.append(step)
    assert len(phase) >= 40 and explosion.step > len(phase)
    assert max(step.total_norm for step in phase) < 0.1 * explosion.value  # then a jump, not a drift
    average = statistics.fmean(step.total_norm for step in phase)
    assert advice.stable and advice.healthy >= 40
    assert BAND[0] * average <= advice.suggestion <= BAND[1] * average
