"""The shared prefix: the prompt tokens every row starts with run once, their cache broadcast to the rows.

Every row of an ART batch starts with the chat template's opening and the same image (and a shared
system turn, if any); the G samples of one prompt share the whole prompt. Those tokens run once, as
one row, and each row continues from their cache: full-attention keys / values and linear-attention
conv / recurrent states, broadcast as views and never written. A `Prefix` can be continued by more
tokens (a training step's template + image, then one group's question), and it is differentiable:
`Prefix.leaf` / `Prefix.backward` let micro-batches accumulate gradients into detached copies of its
states and backpropagate through the prefix pass once per step, as `steps` does for the image.

Functions here take the decoder (`model.model`, adapters included), not the full model.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .prompting import Batch

# Profiler scope (torch.profiler / record_function) around each prefix pass; see benchmarks/profile_step.py.
PREFIX_SCOPE = "art_lib shared prefix pass"


def prompt_starts(batch: Batch) -> torch.Tensor:
    """Column (B,) where each left-padded prompt starts."""
    return batch.prompt_length - batch.attention_mask[:, : batch.prompt_length].sum(1)


def shared_prefix_length(batch: Batch) -> int:
    """Tokens S every row's prompt starts with, keeping >= 1 own prompt token per row and the image whole.

    The row's last prompt token must stay in its suffix: its hidden state predicts the first completion
    token. 0 when the image is not entirely inside the shared part (then nothing is shared).
    """
    starts = prompt_starts(batch)
    n = int((batch.prompt_length - starts).min()) - 1
    if n <= 0:
        return 0
    rows = torch.stack([batch.input_ids[i, int(s) : int(s) + n] for i, s in enumerate(starts)])
    same = (rows == rows[:1]).all(0)
    S = n if bool(same.all()) else int((~same).int().argmax())
    s0 = int(starts[0])
    prompt_mm = batch.mm_token_type_ids[0, s0 : batch.prompt_length]
    if bool(prompt_mm[S:].any()) or not bool(prompt_mm[:S].any()):
        return 0  # the image (or part of it) lies in the rows' own tokens, or there is no image to share
    return S


def _slots(cache) -> list[tuple[object, str]]:
    """(layer, kind) of every state tensor of a cache, in a fixed order: keys, values, conv, recurrent."""
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    out = []
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            out += [(layer, "keys"), (layer, "values")]
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            out += [(layer, "conv"), (layer, "recurrent")]
    return out


def _get(layer, kind: str) -> torch.Tensor:
    return (
        layer.conv_states[0]
        if kind == "conv"
        else layer.recurrent_states[0]
        if kind == "recurrent"
        else getattr(layer, kind)
    )


def _with_states(cache, tensors: list[torch.Tensor]):
    """A copy of a 1-row cache holding `tensors` (in `_slots` order); the original is untouched."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in new.layers:
        if hasattr(layer, "conv_states"):
            layer.conv_states, layer.recurrent_states = dict(layer.conv_states), dict(layer.recurrent_states)
    for (layer, kind), t in zip(_slots(new), tensors, strict=True):
        if kind == "conv":
            layer.conv_states[0] = t
        elif kind == "recurrent":
            layer.recurrent_states[0] = t
        else:
            setattr(layer, kind, t)
    return new


class Prefix:
    """Tokens `ids` (S,) run once as one row, and the 1-row cache they left (see the module docstring)."""

    def __init__(self, ids: torch.Tensor, mm: torch.Tensor, cache):
        self.ids, self.mm, self.cache = ids, mm, cache

    @property
    def length(self) -> int:
        return int(self.ids.numel())

    def states(self) -> list[torch.Tensor]:
        return [_get(layer, kind) for layer, kind in _slots(self.cache)]

    def leaf(self) -> Prefix:
        """The same prefix with detached states that collect `.grad` (itself when nothing needs a gradient)."""
        states = self.states()
        if not any(t.requires_grad for t in states):
            return self
        return Prefix(self.ids, self.mm, _with_states(self.cache, [t.detach().requires_grad_() for t in states]))

    def backward(self, leaf: Prefix) -> None:
        """Backpropagate the gradients accumulated in `leaf`'s states through this prefix's pass, once."""
        if leaf is self:
            return
        pairs = [(t, g.grad) for t, g in zip(self.states(), leaf.states()) if g.grad is not None and t.requires_grad]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])

    def rows(self, B: int, capture: dict | None = None):
        """A cache for B rows that read this prefix and never write it (see `_read_only_broadcast`)."""
        cache = _with_states(self.cache, self.states())
        _read_only_broadcast(cache, B, capture)
        return cache


def _read_only_broadcast(cache, B: int, capture: dict | None = None) -> None:
    """Expand a 1-row cache to B rows (views) and make it read-only: updates return prefix + new, store nothing.

    Nothing is stored, so a layer recomputed in backward (gradient checkpointing) reads the same states.
    With `capture`, what the updates would have stored is put there instead, keyed by (layer id, kind).
    """
    from transformers.cache_utils import LinearAttentionCacheLayerMixin

    def rows(x: torch.Tensor) -> torch.Tensor:
        return x.expand(B, *x.shape[1:])

    def keep(layer, kind, value):
        if capture is not None:
            capture[id(layer), kind] = value
        return value

    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys, layer.values = keys, values = rows(layer.keys), rows(layer.values)

            def update(k, v, *a, _k=keys, _v=values, _layer=layer, **kw):
                return keep(_layer, "keys", torch.cat([_k, k], -2)), keep(_layer, "values", torch.cat([_v, v], -2))

            layer.update = update
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            layer.conv_states = {i: None if c is None else rows(c) for i, c in layer.conv_states.items()}
            layer.recurrent_states = {i: None if r is None else rows(r) for i, r in layer.recurrent_states.items()}

            def update_conv(new, state_idx=0, *a, _c=layer.conv_states, _layer=layer, **kw):
                full = torch.cat([_c[state_idx], new], -1)
                keep(_layer, "conv", full[..., -_c[state_idx].shape[-1] :])
                return full

            layer.update_conv_state = update_conv
            # One new token would take the decode kernel, which writes the conv state in place: keep the
            # multi-token path (the one HF takes while recording past states), which calls `update_conv`.
            layer.record_past = True
            layer.update_recurrent_state = lambda r, *a, _layer=layer, **kw: keep(_layer, "recurrent", r)


@contextlib.contextmanager
def layer_flags(decoder, **flags):
    """Set attributes on the decoder's language-model layers for the block, then restore them."""
    layers = list(decoder.language_model.layers)
    saved = [{k: mod.__dict__[k] for k in flags if k in mod.__dict__} for mod in layers]
    for mod in layers:
        for k, v in flags.items():
            setattr(mod, k, v)
    try:
        yield
    finally:
        for mod, old in zip(layers, saved):
            for k in flags:
                if k in old:
                    setattr(mod, k, old[k])
                else:
                    delattr(mod, k)


def run_prefix(
    decoder,
    ids: torch.Tensor,
    mm: torch.Tensor,
    positions: torch.Tensor,
    grid: torch.Tensor,
    image_embeds: torch.Tensor,
    base: Prefix | None = None,
) -> Prefix:
    """The prefix of tokens `ids` (S,) with M-RoPE `positions` (3, 1, S), run as one row.

    With `base` (a prefix `ids` starts with, holding the image), only the tokens after it run,
    continuing from its cache without changing it; otherwise all of them run, image included.
    """
    from transformers.cache_utils import DynamicCache

    n = base.length if base is not None else 0
    if base is not None and (n > len(ids) or not torch.equal(base.ids, ids[:n]) or bool(mm[n:].any())):
        base, n = None, 0  # not a continuation of `base`: run everything
    if base is not None and n == len(ids):
        return base
    # The prefix writes its cache: one row, never recomputed by gradient checkpointing.
    with layer_flags(decoder, gradient_checkpointing=False), torch.profiler.record_function(PREFIX_SCOPE):
        if base is None:
            cache = DynamicCache(config=decoder.config.get_text_config())
            decoder(
                input_ids=ids[None],
                mm_token_type_ids=mm[None],
                image_grid_thw=grid,
                mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=(image_embeds,))},
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
            return Prefix(ids, mm, cache)
        captured: dict = {}
        rows = base.rows(1, captured)
        decoder(
            input_ids=ids[None, n:],
            mm_token_type_ids=torch.zeros_like(ids[None, n:]),
            position_ids=positions[..., n:],
            past_key_values=rows,
            use_cache=True,
        )
    states = [captured[id(layer), kind] for layer, kind in _slots(rows)]
    return Prefix(ids, mm, _with_states(base.cache, states))


def shared_prefix_hidden(
    decoder, batch: Batch, S: int, grid: torch.Tensor, image_embeds: torch.Tensor, prefix: Prefix | None = None
) -> torch.Tensor:
    """Hidden states (B, C, D) predicting the completion tokens, the first S prompt tokens (image included) run once.

    Each row becomes [prefix | own prompt tokens | completion | right pads]: right padding after the
    shared prefix keeps the prefix at the same positions in every row, and pads after a row's tokens
    change nothing for them (causal attention; the linear-attention layers zero padded inputs). The
    M-RoPE positions are those of the unpadded row, as in the left-padded batch. `prefix` (from a
    larger batch these rows belong to, e.g. a training step) is continued to S tokens instead of
    running them again. Differentiable: the prefix's states carry gradients back to the image embeddings.
    """
    B, P, C = len(batch), batch.prompt_length, batch.completion_ids.shape[1]
    starts = prompt_starts(batch).tolist()
    n_comp = batch.completion_mask.sum(1).tolist()
    own = [
        torch.cat([batch.input_ids[i, s + S : P], batch.input_ids[i, P : P + n_comp[i]]]) for i, s in enumerate(starts)
    ]
    L = max(len(o) for o in own)
    suffix = batch.input_ids.new_zeros(B, L)
    suffix_mask = batch.attention_mask.new_zeros(B, L)
    for i, o in enumerate(own):
        suffix[i, : len(o)], suffix_mask[i, : len(o)] = o, 1
    head = batch.input_ids[0, starts[0] : starts[0] + S]
    head_mm = batch.mm_token_type_ids[0, starts[0] : starts[0] + S]
    ids = torch.cat([head.expand(B, S), suffix], 1)
    mask = torch.cat([torch.ones_like(suffix_mask[:, :1]).expand(B, S), suffix_mask], 1)
    mm = torch.cat([head_mm.expand(B, S), torch.zeros_like(suffix)], 1)
    positions, _ = decoder.get_rope_index(
        ids, mm_token_type_ids=mm, image_grid_thw=grid.expand(B, 3), attention_mask=mask
    )
    shared = run_prefix(decoder, head, head_mm, positions[:, :1, :S], grid, image_embeds, base=prefix)
    with layer_flags(decoder, _can_checkpoint_with_cache=True):  # rows only read the cache: recompute is safe
        hidden = decoder(
            input_ids=suffix,
            attention_mask=mask,
            mm_token_type_ids=torch.zeros_like(suffix),
            position_ids=positions[:, :, S:],
            past_key_values=shared.rows(B),
            use_cache=True,
        ).last_hidden_state
    # Completion token j of row i is predicted at suffix index (own prompt length - 1 + j).
    first = torch.tensor([P - s - S - 1 for s in starts], device=hidden.device)
    index = (first[:, None] + torch.arange(C, device=hidden.device)[None]).clamp(max=L - 1)
    return hidden.gather(1, index[:, :, None].expand(B, C, hidden.shape[-1]))


def batch_prefix(decoder, batch: Batch, grid: torch.Tensor, image_embeds: torch.Tensor) -> Prefix | None:
    """The prefix every row of `batch` shares, run once (None when nothing is shared): pass it to micro-batches."""
    S = shared_prefix_length(batch)
    if S == 0:
        return None
    B = len(batch)
    positions, _ = decoder.get_rope_index(
        batch.input_ids,
        mm_token_type_ids=batch.mm_token_type_ids,
        image_grid_thw=grid.expand(B, 3),
        attention_mask=batch.attention_mask,
    )
    s0 = int(prompt_starts(batch)[0])
    ids, mm = batch.input_ids[0, s0 : s0 + S], batch.mm_token_type_ids[0, s0 : s0 + S]
    return run_prefix(decoder, ids, mm, positions[:, :1, s0 : s0 + S], grid, image_embeds)
