"""Expectation over transformations (EOT): random, differentiable distortions of the artwork during training.

The differentiable JPEG lives in `art_lib.jpeg`; the others (resize, colour jitter, shift) are here.

A learned PNG may not reach the model byte for byte: chat apps re-encode uploads as JPEG, servers
resize, screenshots shift. Training through random versions of these distortions (applied to the
artwork *before* `preprocess_image`) makes the artwork robust to them; `art_lib.transport`
measures the real (PIL) versions at evaluation time.

Every transform maps (3, H, W) or (B, 3, H, W) pixels in [0, 1] to the same shape in [0, 1], is
differentiable with respect to the pixels, and draws its randomness from an explicit
`torch.Generator`. Output clamps are straight-through (clamp forward, identity backward), as in
`PixelPrompt.pixels()`, so a pixel a transform saturates still receives gradient.

`EOT` is the protocol `train(eot=...)` relies on: a call on the pixels, plus `state_dict` /
`load_state_dict` so a checkpointed run resumes bit-identically (a bare function has no state and is
refused with a TypeError when training starts). Two implementations: `RandomEOT`, a random choice
among the distortions below, and `resize_to`, a deterministic resampling to the size the model sees.

`RandomEOT(None)` (or an empty list) is off: it returns its input unchanged and is falsy, so a trainer
can skip it and reproduce the un-augmented run bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .jpeg import jpeg_like
from .pixel_prompt import as_batch, clamp01

__all__ = ["resize_roundtrip", "color_jitter", "random_shift", "EOT", "RandomEOT", "resize_to", "TRANSFORMS"]

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
TransformSpec = str | tuple[str, dict] | Transform

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _uniform(generator: torch.Generator | None, n: int, lo: float, hi: float) -> list[float]:
    """n floats uniform in [lo, hi) from the generator (drawn on the generator's device)."""
    dev = generator.device if generator is not None else "cpu"
    u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
    return (lo + (hi - lo) * u).tolist()


def _randint(generator: torch.Generator | None, n: int, lo: int, hi: int) -> list[int]:
    """n ints uniform in [lo, hi] (inclusive) from the generator."""
    dev = generator.device if generator is not None else "cpu"
    return torch.randint(lo, hi + 1, (n,), generator=generator, device=dev).tolist()


# --------------------------------------------------------------------------- resize


def resize_roundtrip(pixels: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear (antialiased) resize to `size` (H', W') and back to the original size; same shape, in [0, 1]."""
    x, single = as_batch(pixels)
    h, w = x.shape[-2:]
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if hw[0] <= 0 or hw[1] <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    # antialias=True: a downscale averages like PIL's resampling instead of skipping pixels, so every
    # pixel of the artwork reaches the output (and gets gradient).
    y = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    y = clamp01(y)  # only float rounding can leave [0, 1]: bilinear weights are convex
    return y[0] if single else y


# --------------------------------------------------------------------------- colour and shift


def color_jitter(
    pixels: torch.Tensor,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchvision-style ColorJitter: factors uniform in [1 - a, 1 + a], applied in a random order, per image."""
    x, single = as_batch(pixels)
    for name, a in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not 0 <= a <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {a}")
    b = x.shape[0]
    gray_w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    outs = []
    for i in range(b):
        img = x[i : i + 1]  # (1, 3, H, W)
        factors = {
            "brightness": _uniform(generator, 1, 1 - brightness, 1 + brightness)[0],
            "contrast": _uniform(generator, 1, 1 - contrast, 1 + contrast)[0],
            "saturation": _uniform(generator, 1, 1 - saturation, 1 + saturation)[0],
        }
        order = torch.randperm(3, generator=generator, device=generator.device if generator else "cpu").tolist()
        for k in order:
            name = ("brightness", "contrast", "saturation")[k]
            f = factors[name]
            if name == "brightness":
                img = img * f
            else:
                gray = (img * gray_w).sum(dim=1, keepdim=True)  # (1, 1, H, W)
                # Contrast blends towards the mean gray level, saturation towards the pixel's own gray.
                ref = gray.mean(dim=(-2, -1), keepdim=True) if name == "contrast" else gray
                img = f * img + (1 - f) * ref
            img = clamp01(img)  # as torchvision, clamp after every step
        outs.append(img)
    out = torch.cat(outs, dim=0)
    return out[0] if single else out


def random_shift(
    pixels: torch.Tensor, max_shift: int = 8, generator: torch.Generator | None = None, mode: str = "replicate"
) -> torch.Tensor:
    """Shift each image by integers (dy, dx) uniform in [-max_shift, max_shift]; same shape.

    `mode="replicate"` pads with the edge pixels and crops (content shifted out of frame is lost, so
    it gets no gradient); `mode="roll"` wraps around (every pixel stays in the image).
    """
    x, single = as_batch(pixels)
    if mode not in ("replicate", "roll"):
        raise ValueError(f"unknown shift mode {mode!r}; choose 'replicate' or 'roll'")
    m = int(max_shift)
    if m < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    b, _, h, w = x.shape
    outs = []
    for i in range(b):
        dy, dx = _randint(generator, 2, -m, m)
        img = x[i : i + 1]
        if mode == "roll":
            img = torch.roll(img, shifts=(dy, dx), dims=(-2, -1))
        else:
            padded = F.pad(img, (m, m, m, m), mode="replicate")  # (1, 3, H + 2m, W + 2m)
            # Output pixel (r, c) reads input (r - dy, c - dx): content moves by (+dy, +dx).
            img = padded[..., m - dy : m - dy + h, m - dx : m - dx + w]
        outs.append(img)
    out = torch.cat(outs, dim=0)
    return out[0] if single else out


# --------------------------------------------------------------------------- EOT


def _round_to(n: float, multiple: int) -> int:
    """Nearest positive multiple of `multiple`."""
    return max(multiple, int(round(n / multiple)) * multiple)


def _eot_jpeg(
    pixels: torch.Tensor,
    generator: torch.Generator,
    quality: Sequence[int] = (50, 95),
    subsample: bool = True,
    rounding: str = "ste",
) -> tuple[torch.Tensor, dict]:
    """jpeg_like at a quality uniform in [quality[0], quality[1]]."""
    q = _randint(generator, 1, int(quality[0]), int(quality[1]))[0]
    return jpeg_like(pixels, q, subsample=subsample, rounding=rounding), {"quality": q}


def _eot_resize(
    pixels: torch.Tensor,
    generator: torch.Generator,
    scale: Sequence[float] = (0.5, 1.5),
    multiple: int = 32,
    sizes: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, dict]:
    """resize_roundtrip via one of `sizes`, or a size scaled by a factor in `scale`, rounded to `multiple`."""
    h, w = pixels.shape[-2:]
    if sizes:
        size = tuple(int(s) for s in sizes[_randint(generator, 1, 0, len(sizes) - 1)[0]])
    else:
        s = _uniform(generator, 1, float(scale[0]), float(scale[1]))[0]
        # Multiples of the processor's patch factor (32 for Qwen3.5): sizes an app might resize a valid image to.
        size = (_round_to(h * s, multiple), _round_to(w * s, multiple))
        if size == (h, w):  # rounding landed back on the original: step one multiple away so it is not a no-op
            size = (
                (h + multiple, w + multiple) if s >= 1 else (max(multiple, h - multiple), max(multiple, w - multiple))
            )
    return resize_roundtrip(pixels, size), {"size": size}


def _eot_jitter(
    pixels: torch.Tensor,
    generator: torch.Generator,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
) -> tuple[torch.Tensor, dict]:
    """color_jitter with the given strengths."""
    return color_jitter(pixels, brightness, contrast, saturation, generator), {}


def _eot_shift(
    pixels: torch.Tensor, generator: torch.Generator, max_shift: int = 8, mode: str = "replicate"
) -> tuple[torch.Tensor, dict]:
    """random_shift with the given range."""
    return random_shift(pixels, max_shift, generator, mode), {}


# Named transforms for EOT specs; each takes (pixels, generator, **params) -> (pixels, drawn params).
TRANSFORMS: dict[str, Callable[..., tuple[torch.Tensor, dict]]] = {
    "jpeg": _eot_jpeg,
    "resize": _eot_resize,
    "jitter": _eot_jitter,
    "shift": _eot_shift,
}


@runtime_checkable
class EOT(Protocol):
    """What `train(eot=...)` calls: pixels (3, H, W) in [0, 1] -> pixels, and its state for checkpoints.

    Optionally `output_size((H, W)) -> (H', W')` when the output size differs from the input's (the trainer
    counts visual tokens on the size the model sees).
    """

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class RandomEOT:
    """Picks one random transformation per call: identity with probability 1 - p, else one of `transforms`.

    `transforms` items: a name in `TRANSFORMS` ("jpeg", "resize", "jitter", "shift") with its
    default parameters, a `(name, {param: value})` pair, or any callable `f(pixels, generator) -> pixels`.
    `weights` (optional) sets the relative odds of the items. Randomness comes from the generator passed
    to the call, else from the EOT's own generator seeded with `seed` (save it with `state_dict` to
    resume a run exactly). `None` or `[]`: off, the call returns its input object unchanged.
    `last` records the latest choice ({"name": ..., **drawn params}) for logging.
    """

    def __init__(
        self,
        transforms: Sequence[TransformSpec] | None = None,
        p: float = 0.5,
        seed: int = 0,
        weights: Sequence[float] | None = None,
    ) -> None:
        """Validate the specs; nothing random happens until the first call."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.items: list[tuple[str, Callable[..., Any], dict, bool]] = []
        for spec in transforms or ():
            self.items.append(self._parse(spec))
        if weights is not None:
            if len(weights) != len(self.items) or any(float(v) < 0 for v in weights) or not sum(weights) > 0:
                raise ValueError(f"weights must be {len(self.items)} non-negative numbers with a positive sum")
        self.weights = None if weights is None else [float(v) for v in weights]
        self.p = float(p)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.last: dict = {"name": "identity"}

    @staticmethod
    def _parse(spec: TransformSpec) -> tuple[str, Callable[..., Any], dict, bool]:
        """spec -> (name, function, params, returns_params)."""
        if isinstance(spec, str):
            spec = (spec, {})
        if isinstance(spec, tuple):
            if len(spec) != 2 or not isinstance(spec[0], str) or not isinstance(spec[1], dict):
                raise ValueError(f"a transform spec tuple must be (name, params dict), got {spec!r}")
            name, params = spec
            if name not in TRANSFORMS:
                raise ValueError(f"unknown transform {name!r}; choose from {sorted(TRANSFORMS)} or pass a callable")
            return name, TRANSFORMS[name], dict(params), True
        if callable(spec):
            return getattr(spec, "__name__", type(spec).__name__), spec, {}, False
        raise ValueError(f"bad transform spec {spec!r}: a name, (name, params) or a callable")

    @property
    def enabled(self) -> bool:
        """True when calls can change the pixels (some transform and p > 0)."""
        return bool(self.items) and self.p > 0

    def __bool__(self) -> bool:
        return self.enabled

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One random transformation of the pixels (the same one for every image of a batch)."""
        if not self.enabled:
            self.last = {"name": "identity"}
            return pixels
        g = generator if generator is not None else self.generator
        if _uniform(g, 1, 0.0, 1.0)[0] >= self.p:
            self.last = {"name": "identity"}
            return pixels
        if self.weights is None:
            k = _randint(g, 1, 0, len(self.items) - 1)[0]
        else:
            dev = g.device
            k = int(torch.multinomial(torch.tensor(self.weights, device=dev), 1, generator=g))
        name, fn, params, returns_params = self.items[k]
        if returns_params:
            out, drawn = fn(pixels, g, **params)
        else:
            out, drawn = fn(pixels, g), {}
        self.last = {"name": name, **drawn}
        return out

    def state_dict(self) -> dict:
        """The internal generator's state (for exact resumption)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the internal generator's state."""
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        names = [name for name, *_ in self.items]
        return f"RandomEOT(transforms={names}, p={self.p}, seed={self.seed})"


class resize_to:  # noqa: N801 - used like a function: `train(eot=resize_to((h, w)))`
    """A deterministic 'transformation' for `train(eot=...)`: resample the artwork to `size` (differentiable).

    Used to train an artwork whose size the processor would resize: the model then sees an
    approximation (torch bilinear, antialiased) of what the official processor (PIL bicubic) will feed it.
    Stateless, but an `EOT` like any other: its `state_dict` is empty.
    """

    def __init__(self, size: tuple[int, int]):
        self.size = tuple(size)

    def __call__(self, pixels: torch.Tensor, generator=None) -> torch.Tensor:
        return F.interpolate(pixels[None], size=self.size, mode="bilinear", antialias=True, align_corners=False)[
            0
        ].clamp(0, 1)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size the model sees (what the trainer counts visual tokens on)."""
        return self.size

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
