"""HF RL rollouts go through the one generation interface (`rollout.sample_rollout` -> `hf_generator.HFGenerator`)
and are exactly what `model.generate` samples from torch's current RNG state: checked token for token against a
rollout built here by hand from direct `generate` calls (the pixels given to `generate`, prompts padded here, rows
cut here), with and without an image, in one `generate` call and in several."""

import pytest
import torch
from helpers import QUESTIONS, eos_biased_model, rel_err

from art_lib.hf_generator import HFGenerator
from art_lib.pixel_prompt import PixelPrompt
from art_lib.preprocess import preprocess_image
from art_lib.prompting import chat_text
from art_lib.rollout import sample_rollout

G, MAX_NEW, TEMPERATURE, SEED = 3, 8, 1.3, 7


def _prompt_ids(proc, text: str, image: dict | None) -> list[int]:
    """The rendered prompt's ids, its one image placeholder expanded to the image's visual tokens."""
    if image is not None:
        n = int(image["image_grid_thw"].prod()) // proc.image_processor.merge_size**2
        text = text.replace("<|image_pad|>", "<|image_pad|>" * n)
    return proc.tokenizer(text, add_special_tokens=False)["input_ids"]


def _left_padded(proc, rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    P = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (P - len(r)) + r for r in rows])
    attn = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows])
    return ids, attn, torch.tensor(proc.create_mm_token_type_ids(ids.tolist()))


def _by_hand(model, proc, texts: list[str], image: dict | None, chunk: int) -> tuple[list, list[list[int]]]:
    """(prompt ids, completion ids) per row: each chunk of prompts, every prompt G times in a row, one `generate`
    call on the pixels themselves; a row ends after its first end-of-turn token."""
    tok, config_eos = proc.tokenizer, model.generation_config.eos_token_id
    eos = sorted(
        {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>"), *torch.tensor(config_eos).reshape(-1).tolist()}
    )
    vision = [model.config.image_token_id, model.config.video_token_id]
    vision += [model.config.vision_start_token_id, model.config.vision_end_token_id]
    prompts, comps = [], []
    for start in range(0, len(texts), chunk):
        rows = [_prompt_ids(proc, t, image) for t in texts[start : start + chunk] for _ in range(G)]
        ids, attn, mm = _left_padded(proc, rows, tok.pad_token_id)
        pixels = {}
        if image is not None:
            pixels = dict(
                pixel_values=image["pixel_values"].repeat(len(rows), 1),
                image_grid_thw=image["image_grid_thw"].expand(len(rows), 3),
            )
        out = model.generate(
            input_ids=ids, attention_mask=attn, mm_token_type_ids=mm, max_new_tokens=MAX_NEW, do_sample=True,
            temperature=TEMPERATURE, top_p=1.0, top_k=None, eos_token_id=eos, pad_token_id=tok.pad_token_id,
            suppress_tokens=vision, **pixels,
        )  # fmt: skip
        for p, c in zip(rows, out[:, ids.shape[1] :].tolist()):
            end = next((i for i, t in enumerate(c) if t in eos), None)
            prompts.append(p), comps.append(c if end is None else c[: end + 1])
    return prompts, comps


def _old_logps(model, batch, image: dict | None) -> torch.Tensor:
    """A plain forward of every row (the pixels once per row) at the sampling temperature: (rows, C)."""
    B, P = len(batch), batch.prompt_length
    pixels = {}
    if image is not None:
        pixels = dict(
            pixel_values=image["pixel_values"].repeat(B, 1), image_grid_thw=image["image_grid_thw"].expand(B, 3)
        )
    with torch.no_grad():
        logits = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, mm_token_type_ids=batch.mm_token_type_ids,
            **pixels,
        ).logits  # fmt: skip
    logps = torch.log_softmax(logits[:, P - 1 : -1].float() / TEMPERATURE, -1)
    return logps.gather(-1, batch.completion_ids[..., None]).squeeze(-1) * batch.completion_mask


@pytest.fixture(scope="module")
def model():
    return eos_biased_model()


@pytest.mark.parametrize("with_image", [True, False], ids=["image", "text"])
@pytest.mark.parametrize("chunk", [None, 2], ids=["one_call", "chunks_of_2"])
def test_hf_rollouts_are_generate_sampled_from_torchs_current_rng_state(model, with_image, chunk):
    model, proc = model
    image = None
    if with_image:
        image = preprocess_image(PixelPrompt.from_noise(256, seed=3).pixels(), proc.image_processor)
    texts = [chat_text(proc, q, image=with_image) for q in QUESTIONS[:3]]
    exs = [{"id": i} for i in range(3)]
    torch.manual_seed(SEED)
    prompts, comps = _by_hand(model, proc, texts, image, chunk or len(texts))
    torch.manual_seed(SEED)
    kw = dict(num_generations=G, image=image, max_new_tokens=MAX_NEW, temperature=TEMPERATURE, micro_batch_size=4)
    r = sample_rollout(HFGenerator(model, proc, batch_size=chunk), model, proc, texts, exs, **kw)
    b, P = r.batch, r.batch.prompt_length
    lengths = b.completion_mask.sum(1).tolist()
    assert lengths == [len(c) for c in comps] and len(set(lengths)) >= 3  # ragged: rows ended at different places
    assert b.truncated.tolist() == [c[-1] != proc.tokenizer.convert_tokens_to_ids("<|im_end|>") for c in comps]
    assert bool(b.truncated.any()) and not bool(b.truncated.all())
    for j, (p, c) in enumerate(zip(prompts, comps)):
        assert b.input_ids[j, :P][b.attention_mask[j, :P].bool()].tolist() == p, j  # left-padded prompt
        assert b.input_ids[j, P : P + len(c)].tolist() == c, j  # the completion generate sampled
        assert b.attention_mask[j, P:].tolist() == [1] * len(c) + [0] * (b.completion_ids.shape[1] - len(c))
    assert r.completions == proc.tokenizer.batch_decode(comps, skip_special_tokens=True)
    assert r.examples == [e for e in exs for _ in range(G)]
    assert r.sampling_logps is None  # no engine: the trainer's log-probs are the only ones
    assert rel_err(r.old_logps, _old_logps(model, b, image)) < 1e-5
