"""Offline vLLM as the kit's engine: evaluation equals HF's; RL rollouts never touch the engine's weights."""

import pytest

pytest.importorskip("vllm")

from servable import MAX_NEW_TOKENS, same_fraction  # noqa: E402


def test_evaluate_engine_vllm_matches_hf(engine, hf, artwork_png, examples):
    from art_lib.evaluate import evaluate

    model, processor = hf
    kw = dict(image=artwork_png, benchmark="gsm8k", max_new_tokens=MAX_NEW_TOKENS, progress=False)
    ref = evaluate(model, processor, examples, **kw)
    got = evaluate(model, processor, examples, engine=engine, **kw)
    same = same_fraction(ref, got)
    print(f"offline PNG: {same:.3f} identical; accuracy {got.accuracy} vs {ref.accuracy}")
    assert same >= 0.95 and got.accuracy == ref.accuracy
    assert got.config["engine"] == "vllm"
    assert (got.rows["completion_tokens"] == ref.rows["completion_tokens"]).mean() >= 0.95


def test_evaluate_engine_lora_matches_peft(engine, lora, examples):
    from art_lib.vllm_engine import evaluate_with_engine
    from art_lib.evaluate import evaluate

    peft_model, processor, folder = lora
    ref = evaluate(peft_model, processor, examples, benchmark="gsm8k", max_new_tokens=MAX_NEW_TOKENS, progress=False)
    got = evaluate_with_engine(engine, processor, examples, benchmark="gsm8k", max_new_tokens=MAX_NEW_TOKENS,
                               lora_request=engine.adapter(folder), progress=False)
    same = same_fraction(ref, got)
    print(f"offline LoRA: {same:.3f} identical; accuracy {got.accuracy} vs {ref.accuracy}")
    assert same >= 0.95 and got.accuracy == ref.accuracy


def _varied_reward(completions, examples):
    """Any reward that differs within a group, so the policy gradient is not zero on a random model."""
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
        res = train(model, processor, examples[:4], method="art", objective="grpo", steps=3, batch_size=2,
                    num_generations=4, max_completion_length=MAX_NEW_TOKENS, lr=0.05, reward_fn=_varied_reward,
                    artwork=PixelPrompt.from_icon("math", 64), rollout_engine=engine, progress=False)
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
        train(model, processor, examples[:4], method="lora", objective="grpo", steps=3, batch_size=2,
              num_generations=4, max_completion_length=MAX_NEW_TOKENS, lr=0.05, reward_fn=_varied_reward,
              rollout_engine=engine, progress=False)
    finally:
        del engine.generate
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) >= 2  # a changed adapter gets a new id
    assert engine.weights_fingerprint() == before


def test_rollout_matches_hf_layout(engine, hf, examples):
    """A vLLM rollout has the HF rollout's layout: the same prompt ids, masks and decoded texts."""
    import torch

    from art_lib.methods import make_method
    from art_lib.pixel_prompt import PixelPrompt
    from art_lib.prompting import example_text
    from art_lib.rollout import generate_rollouts
    from art_lib.vllm_engine import vllm_rollouts

    model, processor = hf
    m = make_method("art", model, processor, artwork=PixelPrompt.from_icon("math", 64))
    _, image, embeds = m.policy(grad=False)
    texts = [example_text(processor, ex) for ex in examples[:3]]
    kw = dict(num_generations=2, image=image, image_embeds=embeds, max_new_tokens=MAX_NEW_TOKENS)
    r = vllm_rollouts(engine, m, processor, texts, examples[:3], **kw)
    h = generate_rollouts(model, processor, texts, examples[:3], **kw)
    P = h.batch.prompt_length
    assert r.batch.prompt_length == P
    assert torch.equal(r.batch.input_ids[:, :P], h.batch.input_ids[:, :P])
    # Finished rows end with an end-of-turn token inside the mask; texts are the kit's decoding of the ids.
    C = r.batch.completion_mask.shape[1]
    comp = r.batch.input_ids[:, P:P + C]
    assert r.completions == processor.tokenizer.batch_decode(comp, skip_special_tokens=True)
    lengths = r.batch.completion_mask.sum(1)
    assert bool(((lengths == C) | ~r.batch.truncated).all())
    assert r.old_logps.shape == r.sampling_logps.shape == r.batch.completion_mask.shape
    # The sampler's and the trainer's log-probs of the sampled tokens differ only by numerics (bfloat16 engine).
    mask = r.batch.completion_mask.bool()
    gap = (r.old_logps - r.sampling_logps)[mask].abs()
    print(f"|logp_trainer - logp_vllm| per token: mean {float(gap.mean()):.4f}, max {float(gap.max()):.4f}")
    assert float(gap.mean()) < 0.1
