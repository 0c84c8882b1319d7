import pytest

from engine.config import PRESETS, ConfigError, build_config


def test_the_defaults_are_the_explosion_chapter():
    config = build_config()
    assert (config.cell, config.optimizer, config.lr, config.loss_reduction, config.batch_size,
            config.length, config.epochs, config.hidden, config.embed, config.resolved_init, config.clip) == \
           ("srn", "sgd", 0.2, "sum", 64, 20, 50, 32, 32, "zeros", None)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_a_valid_config(preset):
    assert build_config(preset).preset == preset


def test_options_override_the_preset():
    config = build_config("memory", cell="srn", length=35, epochs=3)
    assert (config.cell, config.length, config.epochs, config.optimizer, config.clip_type) == ("srn", 35, 3, "adam", "1")


def test_a_language_model_without_preset_starts_from_its_corpus_preset():
    config = build_config(task="lm", corpus="tangshi300", cell="gru")
    assert (config.cell, config.corpus, config.hidden, config.clip) == ("gru", "tangshi300", 256, 1.0)


@pytest.mark.parametrize("options", [dict(lr=0), dict(lr=float("nan")), dict(length=2), dict(speed=-1),
                                     dict(layers=3, task="lm"), dict(clip=0.0), dict(device="tpu")])
def test_impossible_values_are_refused(options):
    with pytest.raises(ConfigError):
        build_config(**options)
