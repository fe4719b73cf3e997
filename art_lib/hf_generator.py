"""The HF backend of `generation.Generator`: the model in this process, batched `generate`.

`HFGenerator` is what evaluation (`evaluate.evaluate`, its controls and transports, soft-prompt scoring) samples
through by default, and what RL rollouts sample through unless an engine is set (`rollout.sample_rollout`). It
shows a prompt either a PIL image (or none), given to the model's official processor (`processor(text=...,
images=...)`, `generate_completions`) as a user's file would be, or `generation.ImageInputs`, the float pixels or
embeddings a method trains, or no image (`rollout.sample_batch`: the vision tower runs once per call, its output
handed to `generate`). Both cut each row at its first end-of-turn token, keep it, and decode the rest without
special tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .generation import AdapterFolders, Completion, ImageInputs, Sampling
from .prompting import eos_token_ids, vision_token_ids

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["HFGenerator", "generate_completions"]


def _generation_kwargs(processor, max_new_tokens: int, greedy: bool, temperature: float, top_p: float) -> dict:
    """`generate` arguments: greedy, or sampling with the given temperature / top-p."""
    kw: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "pad_token_id": processor.tokenizer.pad_token_id}
    if greedy:
        # Explicit None for sampling knobs so a checkpoint's generation_config (Qwen ships
        # temperature/top_k/top_p) does not trigger "ignored flags" warnings under greedy.
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=None)
    return kw


def generate_completions(
    model,
    processor,
    texts: Sequence[str],
    image: Image.Image | None = None,
    *,
    max_new_tokens: int = 512,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    cancelled: Callable[[], bool] | None = None,
    shared_prefix: bool = False,
) -> list[dict]:
    """One batched `generate` over rendered prompts sharing one image: text, token ids and count, finish reason.

    Every row gets the same image through the official processor (`images=[image] * B`); prompts
    are left-padded so all rows end where generation starts. `generate` pads a row after its
    end-of-turn token and stops when every row has ended. `cancelled()` is asked between
    tokens; when it returns True generation stops early (a server whose client has gone).
    `shared_prefix`: the tokens all prompts share (template opening, image) run once and
    `generate` continues from their cache.
    """
    import torch

    tok = processor.tokenizer
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        kwargs = {"images": [image] * len(texts)} if image is not None else {}
        inputs = processor(text=list(texts), return_tensors="pt", padding=True, **kwargs)
    finally:
        tok.padding_side = old_side
    device = next(model.parameters()).device
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
    gen_kw = _generation_kwargs(processor, max_new_tokens, greedy, temperature, top_p)
    gen_kw["suppress_tokens"] = vision_token_ids(model, processor)  # a sampled image pad breaks the next forward
    if cancelled is not None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                return torch.full((input_ids.shape[0],), bool(cancelled()), dtype=torch.bool, device=input_ids.device)

        gen_kw["stopping_criteria"] = StoppingCriteriaList([_Cancel()])
    if shared_prefix and image is not None:
        inputs = _with_prefilled_cache(model, inputs)
    with torch.inference_mode():
        out = model.generate(**inputs, **gen_kw)
    new = out[:, inputs["input_ids"].shape[1] :].tolist()
    eos = set(eos_token_ids(model, processor))
    rows = []
    for ids in new:
        # Cut at the first end-of-turn token: later positions are padding of finished rows.
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        kept = ids if end is None else ids[: end + 1]
        rows.append(
            {
                "completion": tok.decode(kept, skip_special_tokens=True),
                "token_ids": kept,
                # Counted like an OpenAI server's usage.completion_tokens: the stop token included.
                "completion_tokens": len(kept),
                "finish_reason": "stop" if end is not None else "length",
            }
        )
    return rows


def _with_prefilled_cache(model, inputs: dict) -> dict:
    """`generate` inputs whose shared prefix (one image, B identical copies) is already in a cache."""
    from .forward import prefilled_cache
    from .prompting import Batch

    grid = inputs["image_grid_thw"][:1]
    image = {"pixel_values": inputs["pixel_values"][: int(grid.prod())], "image_grid_thw": grid}
    ids = inputs["input_ids"]
    batch = Batch(
        input_ids=ids,
        attention_mask=inputs["attention_mask"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        prompt_length=ids.shape[1],
    )
    cache = prefilled_cache(model, batch, image)
    if cache is None:
        return inputs
    return {k: v for k, v in inputs.items() if k != "pixel_values"} | {"past_key_values": cache}


class HFGenerator:
    """`generation.Generator` on an HF model in this process (the method's own model: LoRA layers in place).

    `batch_size` prompts (x n rows) per `generate` call (None: all at once); `shared_prefix` runs the tokens all
    prompts share (template opening, image) once; `progress(k)` is called after each call with its prompt count.
    `Sampling.seed` seeds torch's generator for the call (restored after); None samples from its current state.
    Vision tokens are always suppressed; `Sampling.logprobs` is not computed (None), as the trainer computes them.
    `takes_tensors`: it can be sent `ImageInputs`, so RL rollouts (`rollout.sample_rollout`) send it the trainer's
    own float image or embeddings and sample from torch's RNG state (no engine can be sent tensors).
    """

    takes_tensors = True

    def __init__(
        self,
        model,
        processor,
        *,
        batch_size: int | None = None,
        shared_prefix: bool = False,
        progress: Callable[[int], Any] | None = None,
    ) -> None:
        self.model, self.processor = model, processor
        self.batch_size, self.shared_prefix, self.progress = batch_size, shared_prefix, progress
        self.adapters = AdapterFolders()

    def generate(
        self, prompts: Sequence[str], *, image=None, adapter: Path | None = None, sampling: Sampling
    ) -> list[list[Completion]]:
        """Per prompt, `sampling.n` completions showing `image` (a PIL image, None or `ImageInputs`)."""
        import torch

        if adapter is not None:
            raise ValueError("HFGenerator samples the model it holds: load the adapter onto it, pass adapter=None")
        with torch.random.fork_rng(devices=[]) if sampling.seed is not None else nullcontext():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            if isinstance(image, ImageInputs):
                return self._from_tensors(list(prompts), image, sampling)
            return self._from_pil(list(prompts), image, sampling)

    def _chunks(self, prompts: list[str]):
        step = self.batch_size or max(1, len(prompts))
        for start in range(0, len(prompts), step):
            yield prompts[start : start + step]

    def _from_pil(self, prompts: list[str], image, sampling: Sampling) -> list[list[Completion]]:
        """The processor's own image inputs, `generate_completions` per chunk."""
        n, rows = sampling.n, []
        kw = dict(max_new_tokens=sampling.max_new_tokens, greedy=sampling.greedy, shared_prefix=self.shared_prefix)
        kw.update(temperature=sampling.temperature, top_p=sampling.top_p)
        for chunk in self._chunks(prompts):
            texts = [t for t in chunk for _ in range(n)]
            rows += generate_completions(self.model, self.processor, texts, image, **kw)
            self._advance(len(chunk))
        outs = [Completion(r["token_ids"], r["completion"], r["finish_reason"]) for r in rows]
        return [outs[i : i + n] for i in range(0, len(outs), n)]

    def _from_tensors(self, prompts: list[str], image: ImageInputs, sampling: Sampling) -> list[list[Completion]]:
        """A method's float pixels or embeddings (or no image), `rollout.sample_batch` (one vision-tower pass)."""
        from .rollout import row_token_ids, sample_batch

        n, rows, embeds = sampling.n, [], image.embeds
        kw = dict(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature, top_p=sampling.top_p)
        kw.update(do_sample=not sampling.greedy, shared_prefix=self.shared_prefix)
        tok = self.processor.tokenizer
        for chunk in self._chunks(prompts):
            batch, embeds = sample_batch(self.model, self.processor, chunk, n, image.image, embeds, **kw)
            for j in range(len(batch)):
                ids = row_token_ids(batch, j)[1]
                reason = "length" if bool(batch.truncated[j]) else "stop"
                rows.append(Completion(ids, tok.decode(ids, skip_special_tokens=True), reason))
            self._advance(len(chunk))
        return [rows[i : i + n] for i in range(0, len(rows), n)]

    def _advance(self, k: int) -> None:
        if self.progress is not None:
            self.progress(k)

    def close(self) -> None:
        self.adapters.close()
