"""Training fails loudly and early: non-finite rewards and losses, wrong reward types, bad arguments, long prompts."""

from __future__ import annotations

import math

import pytest
import torch

from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.steps import reward_tensor
from art_lib.train import NonFiniteLossError, check_context, train

EXAMPLES = [
    {"id": str(i), "prompt": f"What is {i} plus {i + 3}?", "answer": str(2 * i + 3), "meta": {}} for i in range(8)
]
RL = dict(
    method="art",
    objective="grpo",
    steps=6,
    batch_size=2,
    num_generations=2,
    max_completion_length=4,
    max_nonfinite=3,
    progress=False,
)


def _rl(reward_fn, **kw):
    model, proc = tiny_model(seed=0)
    return train(model, proc, EXAMPLES, artwork=PixelPrompt.from_noise(256, seed=0), reward_fn=reward_fn, **(RL | kw))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rewards_end_the_run_naming_step_and_reward_function(bad):
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive .*step 3, from the reward function"):
        _rl(lambda completions, examples: [bad] * len(completions))


def test_one_nan_reward_in_one_group_counts_as_a_non_finite_step():
    def reward(completions, examples):  # informative groups, but one NaN among them
        return [float("nan") if i == 0 else float(i % 2) for i in range(len(completions))]

    with pytest.raises(NonFiniteLossError, match="reward function"):
        _rl(reward)


def test_a_model_that_outputs_nan_in_training_ends_the_run_naming_the_loss():
    model, proc = tiny_model(seed=0)

    def poison(module, args, output):  # sampling (no grad) stays finite; the training forward does not
        return output * float("nan") if torch.is_grad_enabled() else output

    model.lm_head.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError, match=r"step 3, from the loss"):
        train(
            model,
            proc,
            EXAMPLES,
            artwork=PixelPrompt.from_noise(256, seed=0),
            reward_fn=lambda c, e: [float(i % 2) for i in range(len(c))],
            **RL,
        )


def test_a_reward_function_returning_strings_is_a_type_error_at_the_first_step():
    with pytest.raises(TypeError, match="must return numbers, got str '1'"):
        _rl(lambda completions, examples: ["1"] * len(completions))
    with pytest.raises(ValueError, match="returned 1 rewards for 4 completions"):
        _rl(lambda completions, examples: [1.0])


def test_reward_tensor_accepts_numbers_and_tensors_only():
    assert reward_tensor([1, 0.5, torch.tensor(2.0).item()], 3).tolist() == [1.0, 0.5, 2.0]
    assert reward_tensor(torch.tensor([1.0, math.nan]), 2)[1].isnan()
    for bad in (["a"], [None], [True]):
        with pytest.raises(TypeError):
            reward_tensor(bad, 1)


@pytest.mark.parametrize("name", ["grad_accum", "steps", "batch_size", "num_generations"])
def test_zero_counts_are_rejected_before_training(name):
    model, proc = tiny_model(seed=0)
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got 0"):
        train(model, proc, EXAMPLES, progress=False, **({"steps": 1, "batch_size": 2} | {name: 0}))


def test_a_prompt_longer_than_the_context_is_an_error_not_a_warning():
    model, proc = tiny_model(seed=0)
    context = model.config.text_config.max_position_embeddings
    long = [{"id": "long", "prompt": "seven " * (4 * context), "answer": "7", "meta": {}}] + EXAMPLES
    with pytest.raises(ValueError, match=rf"context of {context} tokens \(longest: example 'long'"):
        train(model, proc, long, steps=1, batch_size=2, progress=False)
    check_context([10, 20], 21, ["a", "b"])  # fits
    with pytest.raises(ValueError, match="1 prompt"):
        check_context([10, 21], 21, ["a", "b"])
