"""The training configs: every hyper-parameter once (a dataclass field with help and range), validated on
construction, and the `train-*` command lines generated from them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from memface_hub.cli import main
from memface_hub.training.configs import (
    A2ETrainingConfig,
    RendererTrainingConfig,
    add_config_arguments,
    config_from_arguments,
)
from memface_hub.training.train_a2e import A2ETrainingConfig as A2EConfigOfTheTrainer
from memface_hub.training.train_renderer import RendererTrainingConfig as RendererConfigOfTheTrainer

CONFIGS = (A2ETrainingConfig, RendererTrainingConfig)


def parser_of(config_class) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, config_class)
    return parser


def test_the_trainers_use_the_one_config_class():
    assert A2EConfigOfTheTrainer is A2ETrainingConfig and RendererConfigOfTheTrainer is RendererTrainingConfig


@pytest.mark.parametrize("config_class", CONFIGS)
def test_every_field_has_help_and_a_flag_with_its_default(config_class):
    parser = parser_of(config_class)
    actions = {action.dest: action for action in parser._actions}
    for field in dataclasses.fields(config_class):
        assert field.metadata["help"], f"{field.name} has no help"
        if not field.metadata["cli"]:
            assert field.name not in actions
            continue
        action = actions[field.name]
        if field.default is not dataclasses.MISSING and not isinstance(field.default, bool):
            assert action.default == field.default
            assert field.default is None or f"default: {field.default}" in action.help
    parsed = parser.parse_args(["--shards", "s", "--out", "o"])
    assert config_from_arguments(config_class, parsed) == config_class(shards="s", output_dir="o")


def test_the_flags_of_earlier_versions_still_work():
    a2e = parser_of(A2ETrainingConfig).parse_args(
        "--shards s --out o --lr 0.002 --layers 3 --memory-slots 16 --d-model 32 --window 32 --resume".split())
    config = config_from_arguments(A2ETrainingConfig, a2e, frontend={"name": "mel"})
    assert (config.learning_rate, config.num_layers, config.memory_slots, config.d_model, config.window,
            config.resume) == (0.002, 3, 16, 32, 32, True)
    renderer = parser_of(RendererTrainingConfig).parse_args(
        "--shards s --out o --entries 16 --memory-subset 0 --no-colour-augment --max-steps 2 --learning-rate 1e-3 "
        "--mouth-window --mixed-precision bf16".split())
    config = config_from_arguments(RendererTrainingConfig, renderer)
    assert (config.memory_entries, config.memory_subset, config.colour_augment, config.max_steps,
            config.learning_rate, config.mouth_window, config.mixed_precision) == (16, None, False, 2, 1e-3, True,
                                                                                     "bf16")


@pytest.mark.parametrize("config_class, change, message", [
    (A2ETrainingConfig, {"batch_size": 0}, "A2ETrainingConfig.batch_size must be ≥ 1, got 0"),
    (A2ETrainingConfig, {"memory": "episodic"}, "A2ETrainingConfig.memory must be one of"),
    (A2ETrainingConfig, {"epochs": 2.5}, "A2ETrainingConfig.epochs must be int, got 2.5"),
    (A2ETrainingConfig, {"epochs": True}, "A2ETrainingConfig.epochs must be int, got True"),
    (A2ETrainingConfig, {"alternate_fraction": 1.5}, "alternate_fraction must be ≤ 1"),
    (A2ETrainingConfig, {"dropout": float("nan")}, "dropout must be finite"),
    (A2ETrainingConfig, {"splits": 3}, "splits must be str or None, got 3"),
    (RendererTrainingConfig, {"learning_rate": 0.0}, "learning_rate must be > 0"),
    (RendererTrainingConfig, {"mixed_precision": "fp8"}, "mixed_precision must be one of 'no', 'bf16'"),
    (RendererTrainingConfig, {"memory_subset": 0}, "memory_subset must be ≥ 1"),
])
def test_configs_are_validated_with_one_line_errors(config_class, change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as error:
        config_class(shards="s", output_dir="o", **change)
    assert "\n" not in str(error.value)


def test_a_flag_out_of_range_is_a_one_line_cli_error_before_any_work(tmp_path, capsys):
    code = main(["train-renderer", "--shards", str(tmp_path), "--out", str(tmp_path / "run"), "--ring-width", "0.9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("memface train-renderer: error: flags: RendererTrainingConfig.ring_width must be "
                                 "≤ 0.5, got 0.9")
    assert not (tmp_path / "run").exists()
