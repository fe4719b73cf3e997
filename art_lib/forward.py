"""The frozen model's forward pass with one artwork shared by a batch of prompts.

Every row of an ART batch sees the same image, so the vision tower runs once per batch and its
output is handed to the language model for every row through `mm_encoder_outputs`, the model's own
entry point for precomputed encoder outputs. The language model then does exactly what it does
for B copies of the image (same placeholder scatter, same M-RoPE positions); `naive=True` runs the
B copies through the vision tower instead, the path the official processor produces.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .prefix import Prefix, batch_prefix, prompt_starts, run_prefix, shared_prefix_hidden, shared_prefix_length
from .prompting import Batch


def vision_embeds(model, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
    """Visual tokens of one image after the patch merger: (N, D) in the language model's space."""
    if image_grid_thw.shape[0] != 1:
        raise ValueError(f"expected the grid of one image, got {tuple(image_grid_thw.shape)}")
    # The artwork stays float32; it meets the model's dtype only here, at the vision tower's input.
    pixel_values = pixel_values.to(model.model.visual.dtype)
    out = model.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
    return out.pooler_output[0]


# Completion tokens per vocabulary projection: (1024, V) float32 logits are ~1 GB at Qwen3.5's V = 248,320.
LOGIT_CHUNK_TOKENS = 1024


def _lm_parts(model):
    """(decoder returning hidden states, lm_head) of a model, a peft model, or a view with adapters off."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.lm_head


def forward_hidden(
    model, batch: Batch, image: dict | None = None, *, naive: bool = False, image_embeds: torch.Tensor | None = None
) -> torch.Tensor:
    """Last hidden states (B, T, D) of a batch whose rows all show `image` (or no image): no vocabulary projection.

    `image` is `{"pixel_values", "image_grid_thw"}` for ONE image (see `preprocess_image`);
    `image_embeds` may carry its precomputed `vision_embeds` (e.g. reused across micro-batches).
    """
    decoder, _ = _lm_parts(model)
    B = len(batch)
    kwargs = dict(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        mm_token_type_ids=batch.mm_token_type_ids,
        use_cache=False,
    )
    if image is None and image_embeds is None:
        if (batch.mm_token_type_ids == 1).any():
            raise ValueError("the batch holds image tokens but no image was given")
        return decoder(**kwargs).last_hidden_state
    grid = image["image_grid_thw"]
    grids = grid.expand(B, 3)
    if naive:
        # What the official processor builds for B prompts with the same image: B copies.
        pixels = image["pixel_values"].repeat(B, 1)
        return decoder(**kwargs, pixel_values=pixels, image_grid_thw=grids).last_hidden_state
    if image_embeds is None:
        image_embeds = vision_embeds(model, image["pixel_values"], grid)
    encoded = BaseModelOutputWithPooling(pooler_output=(image_embeds,) * B)
    return decoder(**kwargs, image_grid_thw=grids, mm_encoder_outputs={"image": encoded}).last_hidden_state


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits).gather(index) without materialising the (B, T, V) log-probabilities."""
    logits = logits.float()
    picked = torch.gather(logits, -1, index.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def _projected_logprobs(lm_head, hidden: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    return selective_log_softmax(lm_head(hidden).float() / temperature, ids)


def token_logprobs_chunked(
    lm_head, hidden: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0, chunk: int = LOGIT_CHUNK_TOKENS
) -> torch.Tensor:
    """log p(ids) (N,) from hidden states (N, D), projecting `chunk` tokens onto the vocabulary at a time.

    With gradients, each chunk is checkpointed: its (chunk, V) logits are recomputed in the backward
    pass instead of being kept, so at most one chunk's logits exist at any time.
    """
    grad = torch.is_grad_enabled() and hidden.requires_grad
    parts = []
    for i in range(0, hidden.shape[0], chunk):
        h, t = hidden[i : i + chunk], ids[i : i + chunk]
        if grad:
            parts.append(
                torch.utils.checkpoint.checkpoint(_projected_logprobs, lm_head, h, t, temperature, use_reentrant=False)
            )
        else:
            parts.append(_projected_logprobs(lm_head, h, t, temperature))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def completion_hidden(
    model,
    batch: Batch,
    image: dict | None = None,
    *,
    naive: bool = False,
    image_embeds: torch.Tensor | None = None,
    shared_prefix: bool | Prefix = False,
) -> torch.Tensor:
    """Hidden states (B, C, D) that predict the completion tokens (position t predicts token t + 1).

    `shared_prefix=True` runs the prompt tokens every row shares once and continues each row from
    their cache (`prefix.shared_prefix_hidden`); a `Prefix` (from `shared_batch_prefix` over a larger
    batch holding these rows) is continued instead of run again. Where nothing can be shared (no
    image, or the image among the rows' own tokens), the full batch runs.
    """
    P, C = batch.prompt_length, batch.completion_ids.shape[1]
    if shared_prefix is not False and not naive and image is not None:
        S = shared_prefix_length(batch)
        if S > 0:
            if image_embeds is None:
                image_embeds = vision_embeds(model, image["pixel_values"], image["image_grid_thw"])
            base = shared_prefix if isinstance(shared_prefix, Prefix) else None
            return shared_prefix_hidden(
                _lm_parts(model)[0], batch, S, image["image_grid_thw"], image_embeds, prefix=base
            )
    hidden = forward_hidden(model, batch, image, naive=naive, image_embeds=image_embeds)
    return hidden[:, P - 1 : P + C - 1]


def completion_logprobs(
    model,
    batch: Batch,
    image: dict | None = None,
    *,
    naive: bool = False,
    image_embeds: torch.Tensor | None = None,
    temperature: float = 1.0,
    micro_batch_size: int | None = None,
    shared_prefix: bool | Prefix = False,
) -> torch.Tensor:
    """Per-token log-probabilities (B, C) of the completion tokens under the frozen model + artwork; 0 on padding.

    Only completion positions are projected onto the vocabulary, in chunks of `LOGIT_CHUNK_TOKENS`, so
    the (B, T, V) logits never exist. `micro_batch_size` runs the rows in groups of that many (for
    no-grad passes; with gradients, call per micro-batch and backpropagate each to bound memory).
    `shared_prefix`: see `completion_hidden`.
    """
    C = batch.completion_ids.shape[1]
    if C == 0:
        raise ValueError("the batch has no completion tokens")
    if micro_batch_size and micro_batch_size < len(batch):
        return torch.cat(
            [
                completion_logprobs(
                    model,
                    batch.rows(i, i + micro_batch_size),
                    image,
                    naive=naive,
                    image_embeds=image_embeds,
                    temperature=temperature,
                    shared_prefix=shared_prefix,
                )
                for i in range(0, len(batch), micro_batch_size)
            ]
        )
    hidden = completion_hidden(model, batch, image, naive=naive, image_embeds=image_embeds, shared_prefix=shared_prefix)
    mask = batch.completion_mask.bool()
    logps = token_logprobs_chunked(_lm_parts(model)[1], hidden[mask], batch.completion_ids[mask], temperature)
    return torch.zeros(mask.shape, dtype=logps.dtype, device=logps.device).masked_scatter(mask, logps)


def sft_nll(
    model,
    batch: Batch,
    image: dict | None = None,
    *,
    image_embeds: torch.Tensor | None = None,
    shared_prefix: bool | Prefix = False,
) -> torch.Tensor:
    """The SFT loss of a batch before normalising: summed NLL of its completion tokens (scalar, with grad).

    Training divides it by the step's completion tokens; `experiments.sft_eval_loss` by all tokens it scored.
    """
    logps = completion_logprobs(model, batch, image, image_embeds=image_embeds, shared_prefix=shared_prefix)
    return -(logps * batch.completion_mask).sum()


@torch.no_grad()
def prefilled_cache(model, batch: Batch, image: dict, image_embeds: torch.Tensor | None = None, repeats: int = 1):
    """A cache of every prompt token but the last for `generate`, with the shared prefix run once (None if none).

    The prompts are left-padded ([pads | prefix | own tokens]); the prefix runs once, then each
    prompt's own tokens continue from a copy of its cache without padding (padding after the prefix
    would decay the linear-attention state), and the per-prompt caches are laid out as the
    left-padded batch, each repeated `repeats` times (G samples per prompt). Sets the model's M-RoPE
    offsets (`rope_deltas`) for the decoding that follows.
    """
    import copy

    from transformers.cache_utils import DynamicCache, LinearAttentionCacheLayerMixin

    S = shared_prefix_length(batch)
    if S == 0:
        return None
    decoder, _ = _lm_parts(model)
    B, P = len(batch), batch.prompt_length
    ids, mask, mm = batch.input_ids, batch.attention_mask, batch.mm_token_type_ids
    grid = image["image_grid_thw"]
    if image_embeds is None:
        image_embeds = vision_embeds(model, image["pixel_values"], grid)
    positions, deltas = decoder.get_rope_index(
        ids, mm_token_type_ids=mm, image_grid_thw=grid.expand(B, 3), attention_mask=mask
    )
    starts = prompt_starts(batch).tolist()
    s0 = starts[0]
    config = decoder.config.get_text_config()
    shared = run_prefix(
        decoder, ids[0, s0 : s0 + S], mm[0, s0 : s0 + S], positions[:, :1, s0 : s0 + S], grid, image_embeds
    ).cache
    caches = []
    for b, s in enumerate(starts):
        cache = copy.deepcopy(shared)
        if s + S < P - 1:  # the prompt's own tokens, all but the last one (generate feeds that one)
            decoder(
                input_ids=ids[b : b + 1, s + S : P - 1],
                position_ids=positions[:, b : b + 1, s + S : P - 1],
                past_key_values=cache,
                use_cache=True,
            )
        caches.append(cache)
    out = DynamicCache(config=config)
    for i, layer in enumerate(out.layers):
        rows = [c.layers[i] for c in caches]
        if isinstance(rows[0], LinearAttentionCacheLayerMixin):
            layer.update_conv_state(torch.cat([r.conv_states[0] for r in rows]).repeat_interleave(repeats, 0))
            layer.update_recurrent_state(torch.cat([r.recurrent_states[0] for r in rows]).repeat_interleave(repeats, 0))
        if getattr(rows[0], "keys", None) is not None and rows[0].keys.numel():
            keys, values = (
                torch.cat([_left_pad(getattr(r, name), P - 1) for r in rows]).repeat_interleave(repeats, 0)
                for name in ("keys", "values")
            )
            layer.update(keys, values)
    decoder.rope_deltas = deltas.repeat_interleave(repeats, 0)
    return out


def _left_pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """(1, H, n, D) keys or values placed at the right end of `length` columns (the padding is masked out)."""
    return torch.nn.functional.pad(x, (0, 0, length - x.shape[-2], 0))


def shared_batch_prefix(
    model, batch: Batch, image: dict | None, image_embeds: torch.Tensor | None = None
) -> Prefix | None:
    """The prompt tokens every row of `batch` shares, run once (None if none): pass it as `shared_prefix=`.

    A training step runs it once and hands `Prefix.leaf()` to each micro-batch's `completion_logprobs`,
    then `Prefix.backward(leaf)` once (see `steps.py`); each micro-batch continues it with the tokens
    its own rows share (e.g. one prompt's G samples).
    """
    if image is None:
        return None
    if image_embeds is None:
        image_embeds = vision_embeds(model, image["pixel_values"], image["image_grid_thw"])
    return batch_prefix(_lm_parts(model)[0], batch, image["image_grid_thw"], image_embeds)
