"""Sample G completions per prompt with the current artwork (or adapter), ready for a policy loss.

The image is encoded once per rollout batch and handed to `generate` as precomputed encoder
outputs (`mm_encoder_outputs`), so B*G rows cost one vision-tower pass, not B*G.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .forward import completion_logprobs, prefilled_cache, shared_batch_prefix
from .preprocess import image_tokens
from .prompting import Batch, encode, eos_token_ids, pad_batch, vision_token_ids

if TYPE_CHECKING:
    from .generation import Completion


@dataclass
class Rollout:
    """One rollout batch, from sampling to loss: B*G rows, prompts repeated G times in a row."""

    batch: Batch  # token ids [pads | prompt | completion | pads], completion_mask, truncated
    completions: list[str]  # (B*G,) decoded completions, special tokens removed
    examples: list[dict]  # (B*G,) the example of each row
    old_logps: torch.Tensor | None  # (B*G, C) log-probs under the sampling policy, no grad


def completion_mask_from_ids(completion_ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask (B, C) up to and including the first end-of-turn token, and whether a row never ended."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    C = completion_ids.shape[1]
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(is_eos[:, 0], C, dtype=torch.long))
    mask = (torch.arange(C, device=completion_ids.device)[None] <= first[:, None]).long()
    return mask, ~is_eos.any(1)


@torch.no_grad()
def generate_rollouts(
    model,
    processor,
    prompts: list[str],
    examples: list[dict],
    *,
    num_generations: int = 8,
    image: dict | None = None,
    image_embeds: torch.Tensor | None = None,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    do_sample: bool = True,
    compute_logprobs: bool = True,
    generation_batch_size: int | None = None,
    micro_batch_size: int | None = None,
    shared_prefix: bool = False,
) -> Rollout:
    """Sample `num_generations` completions for each rendered prompt, all rows showing the same image.

    `generation_batch_size` prompts (x G rows) go through one `generate` call (None = all at once);
    the old log-probs are computed `micro_batch_size` rows at a time (None = all rows at once), with
    `shared_prefix` (see `forward.completion_hidden`).
    """
    parts, image_embeds = sample_batches(
        model,
        processor,
        prompts,
        num_generations,
        image,
        image_embeds,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        do_sample=do_sample,
        batch_size=generation_batch_size,
        shared_prefix=shared_prefix,
    )
    batch = parts[0] if len(parts) == 1 else concat_batches(processor, parts)
    texts = processor.tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
    rows = [ex for ex in examples for _ in range(num_generations)]
    old = None
    if compute_logprobs:
        if shared_prefix and image is not None:  # the tokens all rows share run once for every micro-batch
            shared_prefix = shared_batch_prefix(model, batch, image, image_embeds) or shared_prefix
        old = completion_logprobs(
            model,
            batch,
            image,
            image_embeds=image_embeds,
            temperature=temperature,
            micro_batch_size=micro_batch_size,
            shared_prefix=shared_prefix,
        )
    return Rollout(batch=batch, completions=texts, examples=rows, old_logps=old)


def sample_batches(
    model,
    processor,
    prompts: list[str],
    G: int,
    image: dict | None,
    image_embeds: torch.Tensor | None,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    do_sample: bool,
    batch_size: int | None,
    shared_prefix: bool,
) -> tuple[list[Batch], torch.Tensor | None]:
    """G samples of each prompt, `batch_size` prompts (x G rows) per `generate` call (None: all at once): one
    Batch per call, and the image's embeddings (computed from `image` once when `image_embeds` is None)."""
    if image is not None and image_embeds is None:
        from .forward import vision_embeds

        image_embeds = vision_embeds(model, image["pixel_values"], image["image_grid_thw"])
    step = batch_size or len(prompts)
    args = (G, image, image_embeds, max_new_tokens, temperature, top_p, do_sample, shared_prefix)
    return [
        _generate(model, processor, prompts[i : i + step], *args) for i in range(0, len(prompts), step)
    ], image_embeds


def _generate(
    model,
    processor,
    prompts,
    G,
    image,
    image_embeds,
    max_new_tokens,
    temperature,
    top_p,
    do_sample,
    shared_prefix: bool = False,
) -> Batch:
    """One `generate` call: G samples of each prompt, as a Batch [pads | prompt | completion | pads].

    With `shared_prefix`, `generate` continues from a cache in which the tokens all prompts share
    (template opening, image) were run once (`forward.prefilled_cache`).
    """
    prompt_batch = encode(processor, prompts, num_image_tokens=image_tokens(image, processor.image_processor))
    device = next(model.parameters()).device
    rows = repeat_prompts(prompt_batch, G).to(device)
    ids, attn, mm = rows.input_ids, rows.attention_mask, rows.mm_token_type_ids
    kwargs = {}
    cache = None
    if shared_prefix and image is not None:
        cache = prefilled_cache(model, prompt_batch.to(device), image, image_embeds, repeats=G)
    if cache is not None:  # the image tokens are in the cache: only their grid is needed, for the positions
        kwargs = dict(image_grid_thw=image["image_grid_thw"].expand(ids.shape[0], 3), past_key_values=cache)
    elif image is not None:
        kwargs = dict(
            image_grid_thw=image["image_grid_thw"].expand(ids.shape[0], 3),
            mm_encoder_outputs={
                "image": BaseModelOutputWithPooling(pooler_output=(image_embeds.detach(),) * ids.shape[0])
            },
        )
    eos = eos_token_ids(model, processor)
    out = model.generate(
        input_ids=ids,
        attention_mask=attn,
        mm_token_type_ids=mm,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=None,
        eos_token_id=eos,
        pad_token_id=processor.tokenizer.pad_token_id,
        suppress_tokens=vision_token_ids(model, processor),
        **kwargs,
    )
    comp = out[:, ids.shape[1] :]
    if comp.shape[1] == 0:
        raise RuntimeError("generate returned no new tokens")
    return completion_batch(rows, comp, eos, processor.tokenizer.pad_token_id)


def repeat_prompts(prompts: Batch, G: int) -> Batch:
    """Each prompt row G times in a row (the rollout layout), without completions."""
    return Batch(
        input_ids=prompts.input_ids.repeat_interleave(G, 0),
        attention_mask=prompts.attention_mask.repeat_interleave(G, 0),
        mm_token_type_ids=prompts.mm_token_type_ids.repeat_interleave(G, 0),
        prompt_length=prompts.prompt_length,
    )


def completion_batch(prompts: Batch, comp: torch.Tensor, eos_ids: list[int], pad_id: int) -> Batch:
    """Prompt rows (B, P) and their sampled completion ids (B, C) as one Batch [pads | prompt | completion | pads].

    A completion ends at its first end-of-turn token (kept, inside the mask); ids after it become padding.
    """
    cmask, truncated = completion_mask_from_ids(comp, eos_ids)
    comp = torch.where(cmask.bool(), comp, torch.full_like(comp, pad_id))
    return Batch(
        input_ids=torch.cat([prompts.input_ids, comp], 1),
        attention_mask=torch.cat([prompts.attention_mask, cmask], 1),
        mm_token_type_ids=torch.cat([prompts.mm_token_type_ids, torch.zeros_like(comp)], 1),
        prompt_length=prompts.input_ids.shape[1],
        completion_mask=cmask,
        truncated=truncated,
    )


@torch.no_grad()
def completions_rollout(
    model,
    processor,
    prompts: list[str],
    examples: list[dict],
    outs: list[list[Completion]],
    *,
    image: dict | None = None,
    image_embeds: torch.Tensor | None = None,
    temperature: float = 1.0,
    compute_logprobs: bool = True,
    micro_batch_size: int | None = None,
) -> Rollout:
    """A Rollout from an engine's completions (`generation.Generator`: G per prompt), laid out as HF rollouts.

    The prompts are the kit's own encoding (checked against the ids the engine reports: a different tokeniser,
    chat template or image size would make the trainer score other tokens than those sampled); the completions
    are the engine's token ids; `old_logps` are the trainer's, the engine's own log-probs `sampling_logps`.
    """
    G = len(outs[0])
    pb = encode(processor, prompts, num_image_tokens=image_tokens(image, processor.image_processor))
    for i, per_prompt in enumerate(outs):
        engine_ids = per_prompt[0].prompt_token_ids
        if engine_ids is not None and engine_ids != pb.input_ids[i][pb.attention_mask[i].bool()].tolist():
            raise RuntimeError(
                f"the engine tokenised prompt {i} differently from the kit ({len(engine_ids)} ids vs "
                f"{int(pb.attention_mask[i].sum())}): is it serving the same checkpoint, with the same image size?"
            )
    rows = [o for per_prompt in outs for o in per_prompt]  # (B*G,), prompts repeated G times in a row
    pad = processor.tokenizer.pad_token_id
    C = max(1, max(len(o.token_ids) for o in rows))
    comp = torch.full((len(rows), C), pad, dtype=torch.long)
    sampling = torch.zeros(len(rows), C)
    for i, o in enumerate(rows):
        comp[i, : len(o.token_ids)] = torch.tensor(o.token_ids, dtype=torch.long)
        if o.logprobs is not None:
            sampling[i, : len(o.logprobs)] = torch.tensor(o.logprobs)
    batch = completion_batch(repeat_prompts(pb, G), comp, eos_token_ids(model, processor), pad)
    batch = batch.to(next(model.parameters()).device)
    texts = processor.tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
    old = None
    if compute_logprobs:
        old = completion_logprobs(
            model, batch, image, image_embeds=image_embeds, temperature=temperature, micro_batch_size=micro_batch_size
        )
    r = Rollout(batch=batch, completions=texts, examples=[ex for ex in examples for _ in range(G)], old_logps=old)
    r.sampling_logps = sampling.to(batch.input_ids.device) * batch.completion_mask  # the engine's own log-probs
    return r


def row_token_ids(batch: Batch, j: int) -> tuple[list[int], list[int]]:
    """(prompt ids without padding, completion ids without padding) of row j."""
    P = batch.prompt_length
    prompt = batch.input_ids[j, :P][batch.attention_mask[j, :P].bool()].tolist()
    n = int(batch.completion_mask[j].sum())
    return prompt, batch.input_ids[j, P : P + n].tolist()


def concat_batches(processor, batches: list[Batch]) -> Batch:
    """Rows of several batches (each with its own P and C) re-padded into one batch on the first one's device."""
    prompts, comps, trunc = [], [], []
    for b in batches:
        for j in range(len(b)):
            p, c = row_token_ids(b, j)
            prompts.append(p), comps.append(c), trunc.append(bool(b.truncated[j]))
    return pad_batch(processor, prompts, comps, trunc).to(batches[0].input_ids.device)
