"""The three ways to adapt a frozen model, behind one interface so the trainer treats them alike.

- `art`: the only trainable tensor is the artwork's pixels; the model sees it through the
  differentiable port of its own image processor.
- `lora`: peft LoRA on the language model's q/k/v/o and gate/up/down projections (the modules vLLM
  can serve for Qwen3.5); the prompt carries no image.
- `soft_prompt`: free embeddings in place of the image's visual tokens (same count, initialised
  from the seed image's), the upper bound of what the image channel could carry.

Each method answers `policy()`: the model to call and the image (pixel inputs or embeddings) that
every row of a batch sees, with gradients flowing to the trainable parameters. `Method` is the whole
interface the trainer, the engines and the experiments use; the three classes satisfy it, and `train` refuses
anything that does not. A method also owns its artifact's round trip (`save`, then `score_saved` from disk) and
what a sampler is sent (`sampler_inputs`). Code that must decide before a method exists (the default artwork, an
engine that loads adapters) reads the class's attributes through `spec(name)`, never the name itself.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from .checkpoint import safe_load
from .config import METHODS
from .evaluate import evaluate
from .forward import vision_embeds
from .generation import SOFT_PROMPT_MESSAGE, ImageInputs
from .pixel_prompt import PixelPrompt
from .preprocess import preprocess_image
from .scoring import EvalResult
from .style import style_loss
from .transforms import resize_to

# Language-model projections only: the vision tower and the linear-attention (GatedDeltaNet)
# projections stay frozen, as vLLM's LoRA support for Qwen3.5 covers these modules.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


@runtime_checkable
class Method(Protocol):
    """What `train` calls on a training method (ART, LoRA, soft prompt)."""

    name: str  # "art", "lora" or "soft_prompt": the `TrainConfig.method` it implements
    shows_image: bool  # the prompt carries an image (an artwork or embeddings in its place)
    servable: bool  # an engine (vLLM, an OpenAI-compatible server) can be sent it: an image or an adapter
    adapter: bool  # it is served as a LoRA adapter on the base weights: the engine must load adapters

    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors: what the optimiser updates and gradients are clipped over."""
        ...

    def policy(self, grad: bool = True) -> tuple[Any, dict | None, torch.Tensor | None]:
        """(model to call, image inputs or None, image embeddings or None) of the current parameters."""
        ...

    def reference(self) -> tuple[Any, dict | None, torch.Tensor | None]:
        """The same triple for the untrained start: the KL reference."""
        ...

    def after_step(self) -> None:
        """Called after each optimiser step (e.g. project the pixels back into [0, 1])."""
        ...

    def state_dict(self) -> dict:
        """The trainable state, for checkpoints and warm starts."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        ...

    def penalty(self) -> tuple[torch.Tensor, dict] | None:
        """(loss term on the parameters themselves, its logged parts) added to every micro-step, or None."""
        ...

    def train_as_served(self) -> None:
        """From now on the training forward sees what an engine is sent (ART: the 8-bit image); else a no-op."""
        ...

    def unload(self):
        """The frozen model without this method's layers (LoRA: adapter layers removed; others: the model as is)."""
        ...

    def save(self, path: str | Path, **metadata) -> Path:
        """Write the served artifact (PNG, adapter folder, tensor file) and return its path."""
        ...

    def score_saved(self, path: str | Path, examples: list[dict], *, engine=None, **eval_kw) -> EvalResult:
        """Greedy accuracy of the artifact `save` wrote at `path`, read back from disk, on the same frozen model
        (or on `engine`, a `vllm_engine.VLLMEngine`); `eval_kw` are `evaluate`'s benchmark / budget / batch size."""
        ...

    def sampler_inputs(self, adapters) -> tuple[Any, Path | None]:
        """(8-bit PIL image or None, adapter folder or None) a generator is sent (`generation.AdapterFolders`
        saves adapters); a ValueError for a method no engine can be sent."""
        ...


def check_method(method) -> None:
    """Raise a TypeError naming what `method` lacks of the `Method` protocol (the trainer calls all of it)."""
    if not isinstance(method, Method):
        members = [*Method.__annotations__, *(k for k in vars(Method) if not k.startswith("_"))]
        missing = [k for k in members if not hasattr(method, k)]
        raise TypeError(f"{type(method).__name__} is not a methods.Method: it lacks {missing}")


class ArtMethod:
    """Optimise the pixels of one image (a `PixelPrompt`)."""

    name, shows_image, servable, adapter = "art", True, True, False

    def __init__(
        self,
        model,
        processor,
        artwork: PixelPrompt,
        eot=None,
        freeze_mask: torch.Tensor | None = None,
        style: dict | None = None,
    ):
        self.model, self.processor, self.artwork = model, processor, artwork
        device = next(model.parameters()).device
        self.artwork.to(device)
        self.initial = artwork.pixels().detach().clone()  # reference policy for KL: the seed image
        self.eot = eot  # optional expectation over transformations (transforms.EOT), off when None
        # An artwork trained through `resize_to` is scored through the processor's own resize (Table 3).
        self.resized = isinstance(eot, resize_to)
        self.freeze_mask = freeze_mask  # (H, W) region of the seed kept fixed, or None
        self.style = style  # `style.style_loss` weights and mask (l2, tv, ssim, mask), or None

    def parameters(self) -> list[torch.Tensor]:
        return [self.artwork.raw]

    def image_inputs(self, pixels: torch.Tensor | None = None) -> dict:
        """Processor-equivalent inputs of the current (or given) pixels, differentiable."""
        return preprocess_image(self.artwork.pixels() if pixels is None else pixels, self.processor.image_processor)

    def policy(self, grad: bool = True):
        """(model, image inputs, image embeddings) for the current artwork (randomly transformed under EOT)."""
        pixels = self.artwork.pixels()
        image = self.image_inputs(self.eot(pixels) if self.eot else pixels)
        if not grad:
            image = {k: v.detach() for k, v in image.items()}
        return self.model, image, vision_embeds(self.model, image["pixel_values"], image["image_grid_thw"])

    def reference(self):
        image = self.image_inputs(self.initial)
        return self.model, image, vision_embeds(self.model, image["pixel_values"], image["image_grid_thw"])

    def after_step(self) -> None:
        self.artwork.project_()  # projected gradient descent: keep pixels in [0, 1]
        if self.freeze_mask is not None:
            from .style import freeze_mask_

            freeze_mask_(self.artwork, self.initial, self.freeze_mask)

    def penalty(self):
        """The style terms pulling the artwork toward its seed, when any."""
        return style_loss(self.artwork.pixels(), self.initial, **self.style) if self.style else None

    def train_as_served(self) -> None:
        from .vllm_engine import Quantize8bit

        self.eot = Quantize8bit(self.eot)  # straight-through 8-bit pixels, then the EOT if any

    def unload(self):
        return self.model

    def state_dict(self) -> dict:
        return {"raw": self.artwork.raw.detach().clone(), "eot": self.eot.state_dict() if self.eot else None}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.artwork.raw.copy_(state["raw"])
        if self.eot and state.get("eot") is not None:
            self.eot.load_state_dict(state["eot"])

    def save(self, path: str | Path, **metadata) -> Path:
        """The served artifact: an 8-bit PNG."""
        return self.artwork.save_png(Path(path).with_suffix(".png"), **metadata)

    def score_saved(self, path, examples, *, engine=None, **eval_kw) -> EvalResult:
        """The PNG through `evaluate` (the processor's own resize when trained through `resize_to`)."""
        kw = dict(progress=False, allow_resize=self.resized, engine=engine or "hf")
        return evaluate(self.model, self.processor, examples, image=path, **kw, **eval_kw)

    def sampler_inputs(self, adapters):
        return self.artwork.to_pil(), None


@contextmanager
def _peft_quiet():
    """Silence the deprecation peft 0.21 triggers in transformers 5 (it reads `is_gradient_checkpointing`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        yield


def load_lora_adapter(base, path: str | Path):
    """A saved LoRA adapter folder on a frozen base, ready to evaluate (what vLLM's `--lora-modules` serves)."""
    from peft import PeftModel

    with _peft_quiet():
        return PeftModel.from_pretrained(base, str(path)).eval()


class LoraMethod:
    """peft LoRA adapters on the language model; base weights stay bit-identical."""

    name, shows_image, servable, adapter = "lora", False, True, True

    def __init__(
        self, model, processor, rank: int = 8, alpha: float | None = None, dropout: float = 0.0, seed: int = 0
    ):
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else 2 * rank,
            lora_dropout=dropout,
            target_modules=LORA_TARGETS,
            bias="none",
        )
        with torch.random.fork_rng(devices=[]), _peft_quiet():
            torch.manual_seed(seed)  # LoRA A init is random: make it a function of the seed
            self.model = get_peft_model(model, cfg)
        self.processor = processor

    def parameters(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def policy(self, grad: bool = True):
        return self.model, None, None

    def reference(self):
        # The adapter's initial function is the identity (B = 0): the base model is the reference.
        return _Disabled(self.model), None, None

    def after_step(self) -> None:
        pass

    def penalty(self):
        return None

    def train_as_served(self) -> None:
        pass  # an adapter is served exactly as trained

    def unload(self):
        """The base's own modules back, nothing merged into its weights; this method keeps the base too."""
        self.model = self.model.unload()
        return self.model

    def state_dict(self) -> dict:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_state_dict(self, state: dict) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in state.items():
                params[n].copy_(v)

    def save(self, path: str | Path, **metadata) -> Path:
        """The served artifact: a peft adapter folder (vLLM `--lora-modules`).

        `model_id` (the base model's name as the user typed it) becomes the adapter's `base_model_name_or_path`
        instead of the local folder it was loaded from; peft's placeholder model card is not written.
        """
        path = Path(path)
        config = self.model.peft_config["default"]
        local = config.base_model_name_or_path
        card = path / "README.md"
        had_card = card.exists()
        config.base_model_name_or_path = metadata.get("model_id", local)
        try:  # LoRA never targets the embeddings: no need to look up the base's vocabulary size
            self.model.save_pretrained(path, save_embedding_layers=False)
        finally:
            config.base_model_name_or_path = local
        if not had_card and card.is_file():
            card.unlink()  # peft's template card: empty sections and the base model's local path
        return path

    def score_saved(self, path, examples, *, engine=None, **eval_kw) -> EvalResult:
        """The saved adapter folder on the same base, its trained adapter layers removed first (on vLLM: the engine
        loads the folder itself); afterwards this method holds the base (or the base with the saved adapter)."""
        base = self.unload()
        if engine is not None:
            kw = {k: v for k, v in eval_kw.items() if k != "batch_size"}
            return evaluate(base, self.processor, examples, engine=engine, adapter=path, progress=False, **kw)
        self.model = load_lora_adapter(base, path)  # the saved adapter, read from disk, on that base
        return evaluate(self.model, self.processor, examples, image=None, progress=False, **eval_kw)

    def sampler_inputs(self, adapters):
        return None, adapters.folder(self)


class _Disabled:
    """Call a peft model with its adapters switched off (the reference policy)."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def __call__(self, *args, **kwargs):
        with self.peft_model.disable_adapter():
            return self.peft_model(*args, **kwargs)

    def parameters(self):
        return self.peft_model.parameters()

    @property
    def model(self):
        """The decoder (hidden states), called with the adapters off, as `forward.forward_hidden` uses it."""
        decoder = self.peft_model.get_base_model().model

        def run(*args, **kwargs):
            with self.peft_model.disable_adapter():
                return decoder(*args, **kwargs)

        return run

    @property
    def lm_head(self):
        return self.peft_model.get_base_model().lm_head  # not a LoRA target: the same with adapters off


class SoftPromptMethod:
    """Free embeddings in place of the visual tokens of the seed image."""

    name, shows_image, servable, adapter = "soft_prompt", True, False, False

    def __init__(self, model, processor, artwork: PixelPrompt):
        self.model, self.processor = model, processor
        device = next(model.parameters()).device
        with torch.no_grad():
            image = preprocess_image(artwork.pixels().to(device), processor.image_processor)
            init = vision_embeds(model, image["pixel_values"], image["image_grid_thw"]).float()
        self.grid = image["image_grid_thw"]
        self.initial = init.clone()
        self.embeds = torch.nn.Parameter(init.clone())  # (N, D) float32, N = visual tokens

    def parameters(self) -> list[torch.Tensor]:
        return [self.embeds]

    def _image(self):
        # Only the grid is used (positions and token count): the embeddings replace the vision tower.
        return {"pixel_values": None, "image_grid_thw": self.grid}

    def policy(self, grad: bool = True):
        dtype = next(self.model.parameters()).dtype
        e = self.embeds if grad else self.embeds.detach()
        return self.model, self._image(), e.to(dtype)

    def reference(self):
        return self.model, self._image(), self.initial.to(next(self.model.parameters()).dtype)

    def after_step(self) -> None:
        pass

    def penalty(self):
        return None

    def train_as_served(self) -> None:
        pass  # no engine is sent embeddings (`sampler_inputs` says so)

    def unload(self):
        return self.model

    def state_dict(self) -> dict:
        return {"embeds": self.embeds.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.embeds.copy_(state["embeds"])

    def save(self, path: str | Path, **metadata) -> Path:
        """Not servable by vLLM as an image: a tensor file for analysis."""
        path = Path(path).with_suffix(".pt")
        torch.save({"embeds": self.embeds.detach().cpu(), "image_grid_thw": self.grid.cpu(), **metadata}, path)
        return path

    def score_saved(self, path, examples, *, engine=None, **eval_kw) -> EvalResult:
        """The saved embeddings in place of the image, generated with HF (no engine can be sent them)."""
        if engine is not None:
            raise ValueError(SOFT_PROMPT_MESSAGE)
        return evaluate_soft_prompt(self.model, self.processor, examples, path, **eval_kw)

    def sampler_inputs(self, adapters):
        raise ValueError(SOFT_PROMPT_MESSAGE)


def evaluate_soft_prompt(
    model,
    processor,
    examples: list[dict],
    path: str | Path,
    *,
    benchmark: str,
    max_new_tokens: int = 512,
    batch_size: int = 16,
) -> EvalResult:
    """Greedy accuracy with saved soft-prompt embeddings in place of the image (not servable by engines): `evaluate`
    on the HF backend, sent the embeddings as `generation.ImageInputs`."""
    saved = safe_load(path)  # a .pt file may come from anyone: tensors only, never code
    dtype = next(model.parameters()).dtype
    image = ImageInputs({"pixel_values": None, "image_grid_thw": saved["image_grid_thw"]}, saved["embeds"].to(dtype))
    kw = dict(benchmark=benchmark, max_new_tokens=max_new_tokens, batch_size=batch_size, label="soft_prompt")
    return evaluate(model, processor, examples, image=image, progress=False, **kw)


def make_method(
    name: str,
    model,
    processor,
    *,
    artwork: PixelPrompt | None = None,
    lora_rank: int = 8,
    lora_alpha: float | None = None,
    lora_dropout: float = 0.0,
    seed: int = 0,
    eot=None,
    freeze_mask=None,
    style: dict | None = None,
):
    """Build the adapter of `name` around a frozen model (`style`: `style.style_loss` weights and mask, ART only)."""
    cls = spec(name)
    if any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has trainable weights: load it with load_frozen / tiny_model (frozen)")
    if style and cls is not ArtMethod:
        raise ValueError("style terms act on pixels: they apply to method 'art' only")
    if cls is LoraMethod:
        return LoraMethod(model, processor, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, seed=seed)
    if artwork is None:
        raise ValueError(f"method {name!r} needs an artwork (PixelPrompt) to start from")
    if cls is ArtMethod:
        return ArtMethod(model, processor, artwork, eot=eot, freeze_mask=freeze_mask, style=style)
    if eot or freeze_mask is not None:
        raise ValueError("eot and freeze_mask act on pixels: they apply to method 'art' only")
    return SoftPromptMethod(model, processor, artwork)


def spec(name: str) -> type:
    """The class of method `name`: its `shows_image`, `servable` and `adapter` before any method is built."""
    classes = {cls.name: cls for cls in (ArtMethod, LoraMethod, SoftPromptMethod)}
    if name not in classes:
        raise ValueError(f"unknown method {name!r}; choose one of {METHODS}")
    return classes[name]


def trainable_parameter_count(method) -> int:
    """Number of trainable scalars of a method (pixels, LoRA weights or soft-prompt entries)."""
    return sum(p.numel() for p in method.parameters())
