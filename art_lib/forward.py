"""The frozen model's forward pass with one artwork shared by a batch of prompts.

Every row of an ART batch sees the same image, so the vision tower runs once per batch and its
output is handed to the language model for every row through `mm_encoder_outputs`, the model's own
entry point for precomputed encoder outputs. The language model then does exactly what it does
for B copies of the image (same placeholder scatter, same M-RoPE positions); `naive=True` runs the
B copies through the vision tower instead, the path the official processor produces.
"""

from __future__ import annotations

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .prompting import Batch


def vision_embeds(model, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
    """Visual tokens of one image after the patch merger: (N, D) in the language model's space."""
    if image_grid_thw.shape[0] != 1:
        raise ValueError(f"expected the grid of one image, got {tuple(image_grid_thw.shape)}")
    # The artwork stays float32; it meets the model's dtype only here, at the vision tower's input.
    pixel_values = pixel_values.to(model.model.visual.dtype)
    out = model.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
    return out.pooler_output[0]


def forward_logits(model, batch: Batch, image: dict | None = None, *, naive: bool = False,
                   image_embeds: torch.Tensor | None = None, logits_to_keep: int = 0) -> torch.Tensor:
    """Logits (B, T or logits_to_keep, V) of a batch whose rows all show `image` (or no image).

    `image` is `{"pixel_values", "image_grid_thw"}` for ONE image (see `preprocess_image`);
    `image_embeds` may carry its precomputed `vision_embeds` (e.g. reused across micro-batches).
    """
    B = len(batch)
    kwargs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                  mm_token_type_ids=batch.mm_token_type_ids, logits_to_keep=logits_to_keep)
    if image is None and image_embeds is None:
        if (batch.mm_token_type_ids == 1).any():
            raise ValueError("the batch holds image tokens but no image was given")
        return model(**kwargs).logits
    grid = image["image_grid_thw"]
    grids = grid.expand(B, 3)
    if naive:
        # What the official processor builds for B prompts with the same image: B copies.
        pixels = image["pixel_values"].repeat(B, 1)
        return model(**kwargs, pixel_values=pixels, image_grid_thw=grids).logits
    if image_embeds is None:
        image_embeds = vision_embeds(model, image["pixel_values"], grid)
    encoded = BaseModelOutputWithPooling(pooler_output=(image_embeds,) * B)
    return model(**kwargs, image_grid_thw=grids, mm_encoder_outputs={"image": encoded}).logits


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits).gather(index) without materialising the (B, T, V) log-probabilities."""
    logits = logits.float()
    picked = torch.gather(logits, -1, index.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def completion_logprobs(model, batch: Batch, image: dict | None = None, *, naive: bool = False,
                        image_embeds: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log-probabilities (B, C) of the completion tokens under the frozen model + artwork."""
    C = batch.completion_ids.shape[1]
    if C == 0:
        raise ValueError("the batch has no completion tokens")
    # Only the last C + 1 positions predict completion tokens: skip the vocabulary projection elsewhere.
    logits = forward_logits(model, batch, image, naive=naive, image_embeds=image_embeds, logits_to_keep=C + 1)
    logits = logits[:, :-1] / temperature
    return selective_log_softmax(logits, batch.completion_ids)
