"""Prompts as the model's own chat template renders them, and batches of token ids around one image.

A batch is laid out as TRL lays out rollouts: prompts left-padded to a common length P, then the
completions right-padded, so column P is the first completion token of every row and the model's
logits for all completions are its last C+1 positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

IMAGE_PAD = "<|image_pad|>"
IM_END = "<|im_end|>"  # the chat template's end of turn


def chat_text(
    processor,
    prompt: str,
    *,
    image: bool = True,
    system: str | None = None,
    history: list[dict] | None = None,
    tools: list[dict] | None = None,
    enable_thinking: bool = False,
) -> str:
    """One user turn (image first, then text) rendered by the model's chat template, ready to generate."""
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": prompt}]
    messages = ([{"role": "system", "content": system}] if system else []) + list(history or [])
    messages.append({"role": "user", "content": content})
    return processor.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=False, enable_thinking=enable_thinking
    )


def example_messages(example: dict, image: dict | None = None) -> list[dict]:
    """Chat messages of an example: system?, history, user turn (image part first), follow-up turns.

    `image` is the content part put before the text (`{"type": "image"}` for the chat template, an
    `image_url` part for an OpenAI-compatible server), or None for a text-only turn.
    """
    meta = example.get("meta") or {}
    messages = [{"role": "system", "content": meta["system"]}] if meta.get("system") else []
    messages += [dict(m) for m in meta.get("messages") or []]
    content = ([image] if image is not None else []) + [{"type": "text", "text": example["prompt"]}]
    messages.append({"role": "user", "content": content})
    # Tool tasks may carry assistant/tool turns between the prompt and the target (data.py "followup").
    messages += [dict(m) for m in meta.get("followup") or []]
    return messages


def example_text(processor, example: dict, *, image: bool = True, enable_thinking: bool = False) -> str:
    """A benchmark example `{prompt, meta: {system?, messages?, followup?, tools?}}` rendered to generate."""
    messages = example_messages(example, {"type": "image"} if image else None)
    return processor.apply_chat_template(
        messages,
        tools=(example.get("meta") or {}).get("tools"),
        add_generation_prompt=True,
        tokenize=False,
        enable_thinking=enable_thinking,
    )


@dataclass
class Batch:
    """Token ids of B rows that share one image: `[pads | prompt | completion | pads]`."""

    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    mm_token_type_ids: torch.Tensor  # (B, T) long: 1 on image tokens
    prompt_length: int  # P: columns [0, P) hold the left-padded prompts
    completion_mask: torch.Tensor = field(default=None)  # (B, C) long, 1 on completion tokens
    truncated: torch.Tensor = field(default=None)  # (B,) bool: completion hit the length limit

    @property
    def completion_ids(self) -> torch.Tensor:  # (B, C)
        return self.input_ids[:, self.prompt_length :]

    def to(self, device) -> Batch:
        return replace(self, **{k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)})

    def rows(self, start: int, stop: int) -> Batch:
        """Rows [start, stop) with the same layout (P and C unchanged)."""
        return replace(self, **{k: v[start:stop] for k, v in vars(self).items() if isinstance(v, torch.Tensor)})

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def vision_token_ids(model, processor) -> list[int]:
    """Ids of the vision special tokens (image/video pads, vision start/end) that generation must never emit.

    A sampled `<|image_pad|>` makes the next forward fail ("Image features and image tokens do not match"),
    and none of them is text. The ids come from the model's config and the processor's token names.
    """
    config = getattr(model, "config", None)
    ids = {
        getattr(config, k, None)
        for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    }
    tok = processor.tokenizer
    for name in ("image_token", "video_token", "vision_start_token", "vision_end_token"):
        token = getattr(processor, name, None)
        if token is not None and token in tok.get_vocab():
            ids.add(tok.convert_tokens_to_ids(token))
    return sorted(i for i in ids if isinstance(i, int))


def eos_token_ids(model, processor) -> list[int]:
    """Ids that end a completion: the generation config's eos, the tokenizer's eos and `<|im_end|>`, in that order.

    The union, because each source may name only some of them (a config may list only `<|endoftext|>`, a
    tokenizer only `<|im_end|>`), while SFT targets always end on `<|im_end|>` (see `encode`).
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(eos) if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos])
    tok = processor.tokenizer
    im_end = tok.convert_tokens_to_ids(IM_END)
    ids += [tok.eos_token_id, im_end if im_end != tok.unk_token_id else None]  # an unknown token maps to unk
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def expand_image_tokens(text: str, num_image_tokens: int) -> str:
    """Replace the single <|image_pad|> with one per visual token, as the official processor does."""
    found = text.count(IMAGE_PAD)
    if num_image_tokens == 0:
        if found:
            raise ValueError("the prompt holds an image placeholder but no image was given")
        return text
    if found != 1:
        raise ValueError(f"expected exactly one image placeholder in the prompt, found {found}")
    return text.replace(IMAGE_PAD, IMAGE_PAD * num_image_tokens)


def encode(
    processor,
    prompts: list[str],
    completions: list[str] | None = None,
    *,
    num_image_tokens: int = 0,
    add_eos: bool = True,
    max_completion_length: int | None = None,
) -> Batch:
    """Tokenise rendered prompts (and optional completions) into one padded batch."""
    tok = processor.tokenizer
    if not prompts:
        raise ValueError("encode needs at least one prompt")
    texts = [expand_image_tokens(p, num_image_tokens) for p in prompts]
    prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    comp_ids = [[] for _ in prompts]
    truncated = [False] * len(prompts)
    if completions is not None:
        if len(completions) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        end = [tok.convert_tokens_to_ids(IM_END)] if add_eos else []
        # Separate tokenisation: the template ends the prompt on a newline, which Qwen's
        # pre-tokeniser always splits from what follows, so the ids equal those of the joined text.
        comp_ids = [tok(c, add_special_tokens=False)["input_ids"] + end for c in completions]
        if max_completion_length is not None:
            truncated = [len(c) > max_completion_length for c in comp_ids]
            comp_ids = [c[:max_completion_length] for c in comp_ids]
    return pad_batch(processor, prompt_ids, comp_ids, truncated)


def pad_batch(
    processor, prompt_ids: list[list[int]], comp_ids: list[list[int]], truncated: list[bool] | None = None
) -> Batch:
    """Left-pad prompts, right-pad completions, and mark image tokens as the processor does."""
    pad = processor.tokenizer.pad_token_id
    P = max(len(p) for p in prompt_ids)
    C = max(len(c) for c in comp_ids)
    rows, mask, cmask = [], [], []
    for p, c in zip(prompt_ids, comp_ids):
        rows.append([pad] * (P - len(p)) + p + c + [pad] * (C - len(c)))
        mask.append([0] * (P - len(p)) + [1] * (len(p) + len(c)) + [0] * (C - len(c)))
        cmask.append([1] * len(c) + [0] * (C - len(c)))
    input_ids = torch.tensor(rows, dtype=torch.long)
    mm = torch.tensor(processor.create_mm_token_type_ids(rows), dtype=torch.long)
    return Batch(
        input_ids=input_ids,
        attention_mask=torch.tensor(mask, dtype=torch.long),
        mm_token_type_ids=mm,
        prompt_length=P,
        completion_mask=torch.tensor(cmask, dtype=torch.long).reshape(len(rows), C),
        truncated=torch.tensor(truncated or [False] * len(rows), dtype=torch.bool),
    )
