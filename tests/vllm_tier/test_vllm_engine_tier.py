"""Offline vLLM as the kit's engine: evaluation equals HF's on every picture-taught toy task; RL rollouts never
touch the engine's weights; a toy DAPO run with vLLM rollouts learns as much as one with HF rollouts."""

import pytest
from toy_tier import ART, TASKS, benchmark, same_fraction

from art_lib.toy.benchmarks import max_new_tokens

MAX_NEW_TOKENS = max_new_tokens("add")


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_engine_vllm_matches_hf(engine, hf, artworks, examples, task):
    from art_lib.evaluate import evaluate

    model, processor = hf
    kw = dict(image=artworks[task], benchmark=benchmark(task), max_new_tokens=max_new_tokens(task), progress=False)
    ref = evaluate(model, processor, examples[task], **kw)
    got = evaluate(model, processor, examples[task], engine=engine, **kw)
    same = same_fraction(ref, got)
    print(f"offline PNG {benchmark(task)}: {same:.3f} identical; accuracy {got.accuracy} vs {ref.accuracy}")
    assert ref.accuracy >= 0.9
    assert same >= 0.95 and got.accuracy == ref.accuracy
    assert got.config["engine"] == "vllm"
    assert (got.rows["completion_tokens"] == ref.rows["completion_tokens"]).mean() >= 0.95


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_engine_text_only_is_not_answered(engine, hf, examples, task):
    """Text only on the engine (no image sent): the picture-taught task is not answered."""
    from art_lib.evaluate import evaluate

    model, processor = hf
    kw = dict(benchmark=benchmark(task), max_new_tokens=max_new_tokens(task), progress=False)
    text_only = evaluate(model, processor, examples[task], engine=engine, **kw)
    assert text_only.config["engine"] == "vllm" and text_only.config["image"] is None
    assert text_only.accuracy < 0.5


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_engine_lora_matches_peft(engine, loras, examples, task):
    from art_lib.evaluate import evaluate

    peft_model, processor, folder = loras[task]
    kw = dict(benchmark=benchmark(task), max_new_tokens=max_new_tokens(task), progress=False)
    ref = evaluate(peft_model, processor, examples[task], **kw)
    got = evaluate(peft_model, processor, examples[task], engine=engine, adapter=folder, **kw)
    same = same_fraction(ref, got)
    print(f"offline LoRA {benchmark(task)}: {same:.3f} identical; accuracy {got.accuracy} vs {ref.accuracy}")
    assert ref.accuracy >= 0.9
    assert same >= 0.95 and got.accuracy == ref.accuracy


def _varied_reward(completions, examples):
    """Any reward that differs within a group when the completions do (sampled at temperature 2 in these tests:
    the toy model is too sure of itself at 1 for a seed artwork's group to differ)."""
    return [len(set(c)) / 10.0 for c in completions]


def test_art_rollouts_change_only_the_image(engine, hf, examples):
    """ART with vLLM rollouts: the artwork sent each step changes, the engine's weights do not."""
    import numpy as np

    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.train import train

    model, processor = hf
    before = engine.weights_fingerprint()
    sent = []
    generate = engine.generate

    def spy(prompts, image=None, **kw):
        sent.append(np.asarray(image).copy())
        return generate(prompts, image, **kw)

    engine.generate = spy
    try:
        res = train(
            model,
            processor,
            examples["add"][:4],
            method="art",
            objective="grpo",
            steps=3,
            batch_size=2,
            num_generations=4,
            max_completion_length=MAX_NEW_TOKENS,
            lr=0.05,
            reward_fn=_varied_reward,
            temperature=2.0,
            artwork=PixelPrompt.from_icon("math", 64),
            rollout_engine=engine,
            progress=False,
        )
    finally:
        del engine.generate
    assert len(sent) == 3 and all(s.dtype == np.uint8 for s in sent)
    assert not np.array_equal(sent[0], sent[-1])  # the image changed between steps...
    assert engine.weights_fingerprint() == before  # ...the engine's weights did not
    assert res.history["reward"].notna().all()


def test_lora_rollouts_sync_adapter_by_request(engine, checkpoint, examples):
    """LoRA with vLLM rollouts: each changed adapter goes to the engine as a new LoRARequest id."""
    from art_lib.models import load_frozen
    from art_lib.train import train

    model, processor = load_frozen(checkpoint)
    before = engine.weights_fingerprint()
    ids = []
    generate = engine.generate

    def spy(prompts, image=None, **kw):
        ids.append(kw["lora_request"].lora_int_id)
        return generate(prompts, image, **kw)

    engine.generate = spy
    try:
        train(
            model,
            processor,
            examples["add"][:4],
            method="lora",
            objective="grpo",
            steps=3,
            batch_size=2,
            num_generations=4,
            max_completion_length=MAX_NEW_TOKENS,
            lr=0.05,
            reward_fn=_varied_reward,
            temperature=2.0,
            rollout_engine=engine,
            progress=False,
        )
    finally:
        del engine.generate
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) >= 2  # a changed adapter gets a new id
    assert engine.weights_fingerprint() == before


def test_rollout_matches_hf_layout(engine, hf, examples):
    """A vLLM rollout has the HF rollout's layout: the same prompt ids, masks and decoded texts."""
    import torch

    from art_lib.hf_generator import HFGenerator
    from art_lib.methods import make_method
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.prompting import example_text
    from art_lib.rollout import sample_rollout

    model, processor = hf
    m = make_method("art", model, processor, artwork=PixelPrompt.from_icon("math", 64))
    _, image, embeds = m.policy(grad=False)
    exs = examples["add"][:3]
    texts = [example_text(processor, ex) for ex in exs]
    kw = dict(num_generations=2, image=image, image_embeds=embeds, max_new_tokens=MAX_NEW_TOKENS)
    r = sample_rollout(engine.as_generator(), model, processor, texts, exs, method=m, **kw)
    h = sample_rollout(HFGenerator(model, processor), model, processor, texts, exs, **kw)
    P = h.batch.prompt_length
    assert r.batch.prompt_length == P
    assert torch.equal(r.batch.input_ids[:, :P], h.batch.input_ids[:, :P])
    # Finished rows end with an end-of-turn token inside the mask; texts are the kit's decoding of the ids.
    C = r.batch.completion_mask.shape[1]
    comp = r.batch.input_ids[:, P : P + C]
    assert r.completions == processor.tokenizer.batch_decode(comp, skip_special_tokens=True)
    lengths = r.batch.completion_mask.sum(1)
    assert bool(((lengths == C) | ~r.batch.truncated).all())
    assert r.old_logps.shape == r.sampling_logps.shape == r.batch.completion_mask.shape
    # The sampler's and the trainer's log-probs of the sampled tokens differ only by numerics (bfloat16 engine).
    mask = r.batch.completion_mask.bool()
    gap = (r.old_logps - r.sampling_logps)[mask].abs()
    print(f"|logp_trainer - logp_vllm| per token: mean {float(gap.mean()):.4f}, max {float(gap.max()):.4f}")
    assert float(gap.mean()) < 0.1


def test_dapo_with_vllm_rollouts_learns_like_hf(engine, hf, examples, tmp_path):
    """toy_add: 8 SFT steps from the math icon (run_arm's warm start), then 15 DAPO steps (8 prompts x G=8; the
    settings of tab2_art_vs_lora) from there, once with HF rollouts and once with vLLM rollouts; each artwork
    scored as its PNG."""
    import copy

    from art_lib.evaluate import evaluate
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.toy.benchmarks import load_toy
    from art_lib.train import train

    model, processor = hf
    data, seed_art = load_toy("add", "train"), PixelPrompt.from_icon("math", 64)

    def accuracy(res, name: str) -> float:
        png = res.artwork.save_png(tmp_path / f"{name}.png")
        return evaluate(
            model,
            processor,
            examples["add"],
            image=png,
            benchmark="toy_add",
            max_new_tokens=MAX_NEW_TOKENS,
            progress=False,
        ).accuracy

    warm = train(
        model,
        processor,
        data,
        method="art",
        objective="sft",
        steps=8,
        batch_size=ART["batch_size"],
        lr=ART["lr"],
        artwork=copy.deepcopy(seed_art),
        benchmark="toy_add",
        progress=False,
    )
    acc = {"warm start": accuracy(warm, "warm")}
    for name, eng in (("HF", "hf"), ("vLLM", engine)):
        res = train(
            model,
            processor,
            data,
            method="art",
            objective="dapo",
            steps=15,
            batch_size=8,
            num_generations=8,
            max_completion_length=MAX_NEW_TOKENS,
            lr=ART["lr"],
            artwork=copy.deepcopy(seed_art),
            init_state=warm.method.state_dict(),
            benchmark="toy_add",
            rollout_engine=eng,
            progress=False,
        )
        acc[name] = accuracy(res, name)
    print(f"toy_add accuracy: {acc}")
    for name in ("HF", "vLLM"):  # each well above the warm start (or near the top), and the two close
        assert acc[name] >= min(acc["warm start"] + 0.1, 0.9), acc
    assert abs(acc["HF"] - acc["vLLM"]) <= 0.15, acc
