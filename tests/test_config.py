"""TrainConfig: one dataclass for every scalar setting, keyword overrides, loud errors on typos and bad values."""

import dataclasses
import re

import pytest

from art_lib.config import ALIASES, FIELDS, NO_EQUIVALENT, TrainConfig
from art_lib.models import tiny_model
from art_lib.train import train

EXAMPLES = [{"id": str(i), "prompt": f"What is {i} plus 1?", "answer": str(i + 1), "meta": {}} for i in range(4)]


def test_unknown_field_is_a_type_error_naming_the_nearest_field():
    with pytest.raises(TypeError, match="'learning_rate'.*did you mean 'lr'|'num_generation'.*'num_generations'"):
        TrainConfig().replace(num_generation=4)
    model, proc = tiny_model(seed=0)
    with pytest.raises(TypeError, match="'grad_acum' is not a TrainConfig field; did you mean 'grad_accum'"):
        train(model, proc, EXAMPLES, steps=1, grad_acum=2, progress=False)
    with pytest.raises(TypeError, match="'micro_batch' .*'micro_batch_size'"):
        train(model, proc, EXAMPLES, {"steps": 1, "micro_batch": 2}, progress=False)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"grad_accum": 0}, "grad_accum must be an integer >= 1"),
        ({"steps": -1}, "steps must be"),
        ({"micro_batch_size": 0}, "micro_batch_size"),
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": 0}, "temperature"),
        ({"loss_type": "ppo"}, "unknown loss_type"),
        ({"scale_rewards": "std"}, "unknown scale_rewards"),
        ({"overlong_cache": 300}, "overlong_cache"),
        ({"importance_sampling_level": "batch"}, "unknown importance_sampling_level"),
        ({"delta": 1.0}, r"delta must be a finite number > 1 or None"),
        ({"delta": NAN}, "delta"),
    ],
)
def test_invalid_values_are_rejected_with_the_field_name(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", NAN),
        ("beta", NAN),
        ("max_grad_norm", NAN),
        ("temperature", NAN),
        ("top_p", NAN),
        ("epsilon_high", NAN),
        ("lr", INF),
        ("weight_decay", INF),
        ("lr", -1e-3),
        ("lr", "1e-2"),  # YAML 1.1 reads 1e-2 as text
        ("temperature", 0.0),
        ("temperature", -1.0),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("epsilon_low", -0.1),
        ("max_grad_norm", -1.0),
        ("lora_dropout", 1.5),
        ("lora_alpha", 0.0),
        ("steps", 0),
        ("steps", 2.5),
        ("steps", True),
        ("batch_size", 0),
        ("generation_batch_size", 0),
        ("warmup_steps", -1),
        ("seed", -1),
    ],
)
def test_non_finite_and_out_of_range_values_are_refused_naming_field_and_value(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be .*got {re.escape(repr(value))}"):
        TrainConfig(**{field: value})


def test_the_edges_of_each_range_are_accepted():
    TrainConfig(lr=0.0, top_p=1.0, temperature=1e-3, max_grad_norm=None, epsilon_high=None, lora_dropout=0.0)
    TrainConfig(lr=1, beta=0, max_grad_norm=0, micro_batch_size=None, image_size=(64, 96), warmup_steps=0)
    with pytest.raises(ValueError, match=r"image_size must be .*got \(64, 96, 3\)"):
        TrainConfig(image_size=(64, 96, 3))


@pytest.mark.parametrize(
    "name, kit",
    [
        ("learning_rate", "lr"),
        ("per_device_train_batch_size", "batch_size"),
        ("max_steps", "steps"),
        ("gradient_accumulation_steps", "grad_accum"),
        ("epsilon", "epsilon_low"),
        ("lr_scheduler_type", "lr_schedule"),
        ("mask_truncated_completions", "overlong_filter"),
    ],
)
def test_another_trainers_name_is_answered_with_the_kits_own(name, kit):
    with pytest.raises(TypeError, match=f"TrainConfig has no '{name}': the kit calls it '{kit}'"):
        TrainConfig().replace(**{name: 1})


def test_a_name_without_equivalent_says_so_and_the_alias_table_points_at_real_fields():
    with pytest.raises(TypeError, match="'lerning_rate' is not a TrainConfig field; did you mean 'lr'"):
        TrainConfig().replace(lerning_rate=0.1)  # a typo of another trainer's name
    with pytest.raises(TypeError, match="TrainConfig has no 'num_train_epochs' and no equivalent of it: .*'steps'"):
        TrainConfig().replace(num_train_epochs=3)
    assert set(ALIASES.values()) <= set(FIELDS)
    assert not (set(ALIASES) | set(NO_EQUIVALENT)) & set(FIELDS)  # a real field is never answered with another


def test_resolved_fills_the_objective_and_method_defaults():
    c = TrainConfig(objective="dapo", method="lora").resolved()
    assert (c.loss_type, c.epsilon_high, c.dynamic_sampling, c.overlong_filter, c.lr, c.lora_alpha) == (
        "dapo",
        0.28,
        True,
        True,
        1e-3,
        16,
    )
    g = TrainConfig(objective="grpo", epsilon_low=0.1).resolved()
    assert (g.loss_type, g.epsilon_high, g.dynamic_sampling, g.lr) == ("grpo", 0.1, False, 1e-2)
    assert TrainConfig(objective="dapo", epsilon_high=0.3).resolved().epsilon_high == 0.3


def test_gspo_and_two_sided_clipping_are_off_by_default_and_stay_unset_in_the_stored_config():
    """None (token level, no delta) is stored as None, so a checkpoint written before these fields existed,
    which lacks them, still matches a default run's config when it resumes."""
    c = TrainConfig(objective="grpo").resolved()
    assert (c.importance_sampling_level, c.delta) == (None, None)
    g = TrainConfig(objective="grpo", importance_sampling_level="sequence", delta=4.0).resolved()
    assert (g.importance_sampling_level, g.delta) == ("sequence", 4.0)


def test_keyword_fields_override_the_config_and_the_result_keeps_the_whole_config():
    model, proc = tiny_model(seed=0)
    cfg = TrainConfig(steps=5, batch_size=2, lr=0.05, image_size=(256, 288))
    res = train(model, proc, EXAMPLES, cfg, steps=1, progress=False)
    assert len(res.history) == 1
    assert set(FIELDS) <= set(res.config) and res.config["steps"] == 1 and res.config["lr"] == 0.05
    assert res.config["image_size"] == [256, 288] and isinstance(res.config, dict)
    assert cfg.steps == 5  # the caller's config is not changed
    assert dataclasses.asdict(cfg.resolved()).keys() == dataclasses.asdict(cfg).keys()


def test_result_neutral_fields_are_marked_on_the_config_and_drive_resume_and_arm_hashes():
    from art_lib import experiments, train
    from art_lib.config import RESULT_NEUTRAL

    assert set(RESULT_NEUTRAL) == {
        "micro_batch_size",
        "generation_batch_size",
        "gradient_checkpointing",
        "shared_prefix",
    }
    for name in RESULT_NEUTRAL:  # not part of an arm's configuration: they live in Runtime.memory
        with pytest.raises(ValueError, match="Runtime.memory"):
            experiments.Arm("toy:base", "toy_add", "art", train={name: None})
        experiments.Runtime(memory={name: None})
    assert set(RESULT_NEUTRAL) <= train._RESUME_MAY_CHANGE  # a resumed run may change them
    assert "lr" not in RESULT_NEUTRAL and "seed" not in train._RESUME_MAY_CHANGE
