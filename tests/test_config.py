"""TrainConfig: one dataclass for every scalar setting, keyword overrides, loud errors on typos and bad values."""

import dataclasses

import pytest

from art_lib.config import FIELDS, TrainConfig
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
    ],
)
def test_invalid_values_are_rejected_with_the_field_name(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


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


def test_keyword_fields_override_the_config_and_the_result_keeps_the_whole_config():
    model, proc = tiny_model(seed=0)
    cfg = TrainConfig(steps=5, batch_size=2, lr=0.05, image_size=(256, 288))
    res = train(model, proc, EXAMPLES, cfg, steps=1, progress=False)
    assert len(res.history) == 1
    assert set(FIELDS) <= set(res.config) and res.config["steps"] == 1 and res.config["lr"] == 0.05
    assert res.config["image_size"] == [256, 288] and isinstance(res.config, dict)
    assert cfg.steps == 5  # the caller's config is not changed
    assert dataclasses.asdict(cfg.resolved()).keys() == dataclasses.asdict(cfg).keys()
