"""Sample G completions per prompt with the current artwork (or adapter), ready for a policy loss.

Every rollout goes through the one generation interface (`generation.Generator`, `sample_rollout`): the HF
backend (`hf_generator.HFGenerator`, the trainer's model in this process) or an engine (vLLM offline or servers).
`completions_rollout` lays the completions out as a Batch and adds the trainer's old log-probabilities. The HF
sampler (`sample_batch`) encodes the image once per `generate` call and hands it over as precomputed encoder
outputs (`mm_encoder_outputs`), so B*G rows cost one vision-tower pass, not B*G.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .forward import completion_logprobs, prefilled_cache, shared_batch_prefix
from .generation import Completion, Generator, ImageInputs, Sampling, method_inputs
from .preprocess import image_tokens
from .prompting import Batch, encode, eos_token_ids, vision_token_ids


@dataclass
class Rollout:
    """One rollout batch, from sampling to loss: B*G rows, prompts repeated G times in a row."""

    batch: Batch  # token ids [pads | prompt | completion | pads], completion_mask, truncated
    completions: list[str]  # (B*G,) decoded completions, special tokens removed
    examples: list[dict]  # (B*G,) the example of each row
    old_logps: torch.Tensor | None  # (B*G, C) log-probs under the sampling policy, no grad
    sampling_logps: torch.Tensor | None = None  # (B*G, C) an engine's own log-probs of its samples (HF: None)


@torch.no_grad()
def sample_rollout(
    generator: Generator,
    model,
    processor,
    prompts: list[str],
    examples: list[dict],
    *,
    method=None,
    num_generations: int = 8,
    image: dict | None = None,
    image_embeds: torch.Tensor | None = None,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    compute_logprobs: bool = True,
    micro_batch_size: int | None = None,
    shared_prefix: bool = False,
) -> Rollout:
    """`num_generations` completions of each rendered prompt sampled by `generator`, as a Rollout scored by `model`.

    The HF backend (a generator with `takes_tensors`, `hf_generator.HFGenerator` on `model`) is sent the trainer's
    own `image` / `image_embeds` (`generation.ImageInputs`) and samples from torch's current RNG state, so a
    seeded run is reproducible; an engine is sent what `method` serves (`Method.sampler_inputs`: ART's 8-bit
    image, LoRA's adapter) with a seed drawn from torch's RNG (rollouts follow `train(seed=...)`), and returns its
    own log-probs (`Rollout.sampling_logps`). The old log-probs are `model`'s on `image` / `image_embeds`, computed
    `micro_batch_size` rows at a time, with `shared_prefix` (see `forward.completion_hidden`).
    """
    in_process = getattr(generator, "takes_tensors", False)
    if in_process:
        shown, adapter, seed = ImageInputs(image, image_embeds), None, None
    else:
        (shown, adapter), seed = method_inputs(method, generator.adapters), int(torch.randint(0, 2**30, ()))
    sampling = Sampling(
        n=num_generations,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        greedy=greedy,
        logprobs=not in_process,
        suppress_token_ids=tuple(vision_token_ids(model, processor)),
    )
    outs = generator.generate(prompts, image=shown, adapter=adapter, sampling=sampling)
    kw = dict(image=image, image_embeds=image_embeds, temperature=temperature, micro_batch_size=micro_batch_size)
    return completions_rollout(
        model, processor, prompts, examples, outs, compute_logprobs=compute_logprobs, shared_prefix=shared_prefix, **kw
    )


@torch.no_grad()
def completions_rollout(
    model,
    processor,
    prompts: list[str],
    examples: list[dict],
    outs: Sequence[Sequence[Completion]],
    *,
    image: dict | None = None,
    image_embeds: torch.Tensor | None = None,
    temperature: float = 1.0,
    compute_logprobs: bool = True,
    micro_batch_size: int | None = None,
    shared_prefix: bool = False,
) -> Rollout:
    """A Rollout from a generator's completions (`generation.Generator`: G per prompt): prompts left-padded,
    completions right-padded, each cut after its first end-of-turn token.

    The prompts are the kit's own encoding (checked against the ids an engine reports: a different tokeniser,
    chat template or image size would make the trainer score other tokens than those sampled); the completions
    are the generator's token ids; `old_logps` are `model`'s (`shared_prefix`: the tokens all rows share run once
    for every micro-batch), an engine's own log-probs `sampling_logps`.
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
    sampling = torch.zeros(len(rows), C) if any(o.logprobs is not None for o in rows) else None
    for i, o in enumerate(rows):
        comp[i, : len(o.token_ids)] = torch.tensor(o.token_ids, dtype=torch.long)
        if sampling is not None and o.logprobs is not None:
            sampling[i, : len(o.logprobs)] = torch.tensor(o.logprobs)
    batch = completion_batch(repeat_prompts(pb, G), comp, eos_token_ids(model, processor), pad)
    batch = batch.to(next(model.parameters()).device)
    texts = processor.tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
    old = None
    if compute_logprobs:
        if shared_prefix and image is not None:  # the tokens all rows share run once for every micro-batch
            shared_prefix = shared_batch_prefix(model, batch, image, image_embeds) or shared_prefix
        kw = dict(image_embeds=image_embeds, temperature=temperature, micro_batch_size=micro_batch_size)
        old = completion_logprobs(model, batch, image, shared_prefix=shared_prefix, **kw)
    if sampling is not None:
        sampling = sampling.to(batch.input_ids.device) * batch.completion_mask
    exs = [ex for ex in examples for _ in range(G)]
    return Rollout(batch=batch, completions=texts, examples=exs, old_logps=old, sampling_logps=sampling)


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
def sample_batch(
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
    shared_prefix: bool = False,
) -> tuple[Batch, torch.Tensor | None]:
    """One `generate` call: G samples of each prompt as a Batch [pads | prompt | completion | pads], and the image's
    embeddings (computed from `image` once when `image_embeds` is None). `hf_generator.HFGenerator`'s sampler.

    With `shared_prefix`, `generate` continues from a cache in which the tokens all prompts share
    (template opening, image) were run once (`forward.prefilled_cache`).
    """
    if image is not None and image_embeds is None:
        from .forward import vision_embeds

        image_embeds = vision_embeds(model, image["pixel_values"], image["image_grid_thw"])
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
    return completion_batch(rows, comp, eos, processor.tokenizer.pad_token_id), image_embeds


def completion_mask_from_ids(completion_ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask (B, C) up to and including the first end-of-turn token, and whether a row never ended."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    C = completion_ids.shape[1]
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(is_eos[:, 0], C, dtype=torch.long))
    mask = (torch.arange(C, device=completion_ids.device)[None] <= first[:, None]).long()
    return mask, ~is_eos.any(1)


def row_token_ids(batch: Batch, j: int) -> tuple[list[int], list[int]]:
    """(prompt ids without padding, completion ids without padding) of row j."""
    P = batch.prompt_length
    prompt = batch.input_ids[j, :P][batch.attention_mask[j, :P].bool()].tolist()
    n = int(batch.completion_mask[j].sum())
    return prompt, batch.input_ids[j, P : P + n].tolist()
