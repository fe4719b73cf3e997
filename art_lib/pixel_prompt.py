"""PixelPrompt: the learnable artwork, an RGB image whose raw pixels are the only parameter.

Reparametrisation: none.  The parameter `raw` *is* the pixel array, float32, (3, H, W).

* `pixels()` returns `raw` clamped to [0, 1] with a straight-through gradient: the
  forward pass is the clamp, the backward pass is the identity.  A pixel pushed past 0 or 1
  therefore still receives gradient and can come back.
* `project_()` clamps `raw` in place under `no_grad`; the trainer calls it after every
  optimiser step, which makes training projected gradient descent on the box [0, 1].

Why not sigmoid/tanh: pixels initialised from an 8-bit image are exactly k/255, so the
differentiable path and the saved PNG agree bit for bit at 8-bit values (see `save_png` /
`from_png`), whereas sigmoid(logit(k/255)) does not round-trip exactly, cannot represent
0 and 1 at all (white icon backgrounds) and has vanishing gradients near them.

`raw` stays float32 whatever dtype the model is cast to: `.to(torch.bfloat16)`,
`.half()` etc. leave it float32 (device moves still apply), because bf16 has only 8 bits
of mantissa, too coarse to accumulate small pixel updates.  Cast `pixels()` to the
model's dtype at the point of use instead.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageColor, ImageOps
from torch import nn

from .png_metadata import VERSION_KEY, check_still, open_png, png_info, png_metadata
from .png_metadata import read_png_metadata as read_png_metadata  # re-exported (public API)

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
SizeLike = int | tuple[int, int]

_RESAMPLE = Image.Resampling.BICUBIC
_WHITE = (255, 255, 255)
# The most pixels a supported processor accepts (Qwen3.5: longest_edge 16777216 = 4096 x 4096);
# a larger PNG is refused from its header, before its pixels are decoded.
MAX_PIXELS = 4096 * 4096
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class _StraightThroughClamp(torch.autograd.Function):
    """clamp(x, 0, 1) in the forward pass, identity in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        # A real clamp (not x + (clamp(x) - x).detach()) so the output is exactly in [0, 1].
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def clamp01(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] with a straight-through gradient."""
    return _StraightThroughClamp.apply(x)


def as_batch(pixels: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(3, H, W) -> (1, 3, H, W), True; (B, 3, H, W) -> itself, False."""
    if not isinstance(pixels, torch.Tensor) or not pixels.is_floating_point() or pixels.ndim not in (3, 4):
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise ValueError(f"pixels must be a float tensor (3, H, W) or (B, 3, H, W), got {shape}")
    if pixels.shape[-3] != 3:
        raise ValueError(f"pixels must have 3 channels (RGB) at dim -3, got {tuple(pixels.shape)}")
    return (pixels.unsqueeze(0), True) if pixels.ndim == 3 else (pixels, False)


def _parse_size(size: SizeLike) -> tuple[int, int]:
    """int -> (size, size); (H, W) -> (H, W); both must be positive ints."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be a positive int or an (H, W) pair of positive ints, got {size!r}")
    if hw[0] <= 0 or hw[1] <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return hw


def _uint8_to_unit(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 k/255; the one place bytes become floats."""
    # float32 division is correctly rounded, so every path (image, noise, PNG) gives
    # bitwise-identical floats for the same bytes.
    # Copy: arrays from PIL are read-only, which torch.from_numpy warns about.
    t = torch.from_numpy(np.array(arr, dtype=np.uint8, order="C")).permute(2, 0, 1).to(torch.float32)
    return (t / 255.0).contiguous()


def check_8bit_mode(mode: str) -> None:
    """16-bit and float images are refused: quantising them to 8 bits would change the artwork."""
    if mode in _HIGH_DEPTH_MODES:
        raise ValueError(
            f"PIL mode {mode!r} (16-bit or float) is not supported; convert to 8-bit, or pass a float array in [0, 1]"
        )


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """Any 8-bit PIL image -> RGB, compositing transparency onto white."""
    check_8bit_mode(img.mode)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        # Transparent pixels become white: the natural page colour of icons and the same
        # background the seed icons are drawn on.
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*_WHITE, 255)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _array_to_hwc(arr: np.ndarray, layout: str) -> np.ndarray:
    """Array in `layout` ("HWC" or "CHW", or 2-D grayscale) -> (H, W, C) with C in {1, 3, 4}."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3:
        if layout == "CHW":
            arr = np.moveaxis(arr, 0, -1)
    else:
        raise ValueError(f"expected a 2-D or 3-D {layout} image array, got shape {tuple(arr.shape)}")
    if arr.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"expected 1 (gray), 3 (RGB) or 4 (RGBA) channels in {layout} layout, got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image has zero height or width: shape {tuple(arr.shape)}")
    return arr


def _float_hwc_to_rgb(arr: np.ndarray) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> (H, W, 3) float32, compositing alpha onto white."""
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("float image contains NaN or inf")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"float image values must be in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    c = arr.shape[-1]
    if c == 1:
        return np.repeat(arr, 3, axis=-1)
    if c == 4:
        rgb, alpha = arr[..., :3], arr[..., 3:]
        return rgb * alpha + (1.0 - alpha)  # over white
    return arr


def _resize_float(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 -> (h, w, 3) float32 via per-channel PIL bicubic, clipped to [0, 1]."""
    h, w = hw
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., i])).resize((w, h), _RESAMPLE)) for i in range(3)]
    # Bicubic overshoots at edges; clip back into the valid box.
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


class PixelPrompt(nn.Module):
    """A learnable RGB artwork whose only parameter is its float32 pixel array."""

    def __init__(self, pixels: torch.Tensor, metadata: dict[str, Any] | None = None) -> None:
        """Wrap a (3, H, W) float tensor in [0, 1] as the trainable artwork."""
        super().__init__()
        if not isinstance(pixels, torch.Tensor) or not pixels.is_floating_point():
            raise TypeError("PixelPrompt expects a floating (3, H, W) tensor; use PixelPrompt.from_image for images")
        if pixels.ndim != 3 or pixels.shape[0] != 3 or pixels.shape[1] == 0 or pixels.shape[2] == 0:
            raise ValueError(f"expected pixels of shape (3, H, W), got {tuple(pixels.shape)}")
        data = pixels.detach().to(torch.float32).clone()
        if not torch.isfinite(data).all() or data.min() < 0 or data.max() > 1:
            raise ValueError("pixels must be finite and in [0, 1]")
        self.raw = nn.Parameter(data)  # (3, H, W) float32; the artwork itself
        self.metadata: dict[str, Any] = dict(metadata or {})

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_image(cls, image: ImageInput, size: SizeLike | None = None) -> PixelPrompt:
        """Build from a path, PIL image, HWC numpy array or CHW tensor, resized once to `size` if given."""
        hw = _parse_size(size) if size is not None else None
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as opened:
                check_still(opened, os.fspath(image))
                opened.load()
                # Honour the camera orientation tag so the artwork looks as the file displays.
                pil = ImageOps.exif_transpose(opened)
            return cls._from_pil(pil, hw)
        if isinstance(image, Image.Image):
            return cls._from_pil(image, hw)
        if isinstance(image, torch.Tensor):
            t = image.detach().cpu()
            if t.is_floating_point():
                t = t.to(torch.float32)  # numpy has no bfloat16
            return cls._from_array(t.numpy(), hw, layout="CHW")
        if isinstance(image, np.ndarray):
            return cls._from_array(image, hw, layout="HWC")
        raise TypeError(
            f"unsupported image type {type(image).__name__}; expected a path, PIL.Image.Image, "
            "numpy array (H, W, C) or torch tensor (C, H, W)"
        )

    @classmethod
    def _from_pil(cls, img: Image.Image, hw: tuple[int, int] | None) -> PixelPrompt:
        """8-bit path: stays on k/255 values, even through the resize."""
        rgb = pil_to_rgb(img)
        if hw is not None and rgb.size != (hw[1], hw[0]):  # PIL sizes are (W, H)
            rgb = rgb.resize((hw[1], hw[0]), _RESAMPLE)
        return cls(_uint8_to_unit(np.asarray(rgb, dtype=np.uint8)))

    @classmethod
    def _from_array(cls, arr: np.ndarray, hw: tuple[int, int] | None, layout: str) -> PixelPrompt:
        """uint8 arrays go through PIL (8-bit path); float arrays keep their precision."""
        arr = _array_to_hwc(arr, layout)
        if arr.dtype == np.uint8:
            pil = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr))
            return cls._from_pil(pil, hw)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"unsupported array dtype {arr.dtype}; use uint8 or float in [0, 1]")
        rgb = _float_hwc_to_rgb(arr)  # (H, W, 3) float32 in [0, 1]
        if hw is not None and rgb.shape[:2] != hw:
            rgb = _resize_float(rgb, hw)
        return cls(torch.from_numpy(np.array(rgb, dtype=np.float32, order="C")).permute(2, 0, 1))

    @classmethod
    def from_noise(cls, size: SizeLike, seed: int = 0) -> PixelPrompt:
        """Uniform noise in [0, 1], quantised to 8-bit values, deterministic per seed."""
        h, w = _parse_size(size)
        gen = torch.Generator().manual_seed(seed)
        u = torch.rand((h, w, 3), generator=gen)  # (H, W, 3) in [0, 1)
        # Quantise so the start point is exactly what a saved PNG would hold.
        k = torch.floor(u * 255.0 + 0.5).to(torch.uint8).numpy()
        return cls(_uint8_to_unit(k))

    @classmethod
    def from_color(cls, size: SizeLike, color: tuple[int, int, int] | str = "white") -> PixelPrompt:
        """Uniform colour: an (r, g, b) tuple in 0..255 or any colour name PIL knows."""
        h, w = _parse_size(size)
        if isinstance(color, str):
            try:
                rgb = ImageColor.getcolor(color, "RGB")
            except ValueError as err:
                raise ValueError(f"unknown colour {color!r}: {err}") from err
        else:
            rgb = tuple(color)
            if len(rgb) != 3 or not all(
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb
            ):
                raise ValueError(f"color must be an (r, g, b) tuple of ints in 0..255 or a colour name, got {color!r}")
        arr = np.empty((h, w, 3), dtype=np.uint8)
        arr[...] = np.asarray(rgb, dtype=np.uint8)
        return cls(_uint8_to_unit(arr))

    @classmethod
    def from_icon(cls, name: str, size: SizeLike = 256) -> PixelPrompt:
        """A seed icon from art_lib.icons (drawn square; resized once if (H, W) is not square)."""
        from art_lib.icons import seed_icon  # imported here: nothing at import time

        h, w = _parse_size(size)
        return cls.from_image(seed_icon(name, max(h, w)), size=(h, w))

    @classmethod
    def from_png(cls, path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> PixelPrompt:
        """Load a saved artwork: pixels are exactly the PNG's bytes / 255, metadata parsed.

        Size and bit depth are checked from the header, before decoding: more than `max_pixels`
        (None: no limit) or a 16-bit/float PNG raises at once. An animated PNG, metadata that does not
        parse, or an `image_size` that is not the image's raise a ValueError (see `png_metadata.py`).
        """
        with open_png(path) as img:  # a still PNG, else ValueError
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ValueError(
                    f"{os.fspath(path)!r} is {img.height}x{img.width} = {img.width * img.height} "
                    f"pixels, more than max_pixels={max_pixels} (a model sees at most that many)"
                )
            check_8bit_mode(img.mode)
            metadata = png_metadata(img, path)  # checked: JSON values, the size it claims
            rgb = pil_to_rgb(img)
        if VERSION_KEY not in metadata:
            warnings.warn(
                f"{os.fspath(path)!r} has no art_lib metadata (no {VERSION_KEY!r} text chunk); "
                "loading its pixels anyway",
                UserWarning,
                stacklevel=2,
            )
        return cls(_uint8_to_unit(np.asarray(rgb, dtype=np.uint8)), metadata=metadata)

    # ------------------------------------------------------------------ views

    def pixels(self) -> torch.Tensor:
        """(3, H, W) float32 in [0, 1]: clamp forward, straight-through (identity) backward."""
        return clamp01(self.raw)

    def forward(self) -> torch.Tensor:
        """Same as pixels()."""
        return self.pixels()

    @torch.no_grad()
    def project_(self) -> PixelPrompt:
        """Clamp raw into [0, 1] in place (call after each optimiser step)."""
        self.raw.clamp_(0.0, 1.0)
        return self

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the artwork."""
        return (int(self.raw.shape[1]), int(self.raw.shape[2]))

    @property
    def num_parameters(self) -> int:
        """Number of trainable scalars: 3 * H * W."""
        return self.raw.numel()

    @torch.no_grad()
    def to_uint8(self) -> np.ndarray:
        """(H, W, 3) uint8 via floor(x * 255 + 0.5) (halves round up, not to even)."""
        bad = int((~torch.isfinite(self.raw.detach())).sum())
        if bad:  # clamp would keep NaN and the cast would write it as 0: a silently different artwork
            raise ValueError(f"the artwork has {bad} non-finite (NaN/inf) values; refusing to quantise or save it")
        x = self.raw.detach().clamp(0.0, 1.0).permute(1, 2, 0).to("cpu", torch.float64).numpy()  # (H, W, 3)
        return np.floor(x * 255.0 + 0.5).astype(np.uint8)

    def to_pil(self) -> Image.Image:
        """The artwork as an 8-bit RGB PIL image."""
        return Image.fromarray(self.to_uint8())

    def save_png(self, path: str | os.PathLike, **metadata: Any) -> Path:
        """Write a lossless 8-bit RGB PNG with art_lib text metadata, atomically; return the path."""
        path = Path(path)
        info = png_info(metadata, self.size)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write next to the target then os.replace: readers (e.g. a server) never see a
        # half-written file.  os.open with 0o666 lets the umask decide the final mode,
        # unlike tempfile's private 0o600.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                self.to_pil().save(f, format="PNG", pnginfo=info)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    # ------------------------------------------------------------------ dtype policy

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> PixelPrompt:
        """Apply device moves but ignore dtype casts: raw (and its grad) stay float32."""

        def keep_float32(t: torch.Tensor) -> torch.Tensor:
            out = fn(t)
            if t.dtype == torch.float32 and out.dtype != torch.float32:
                # Move the original float32 values instead of round-tripping through the
                # cast, which would lose precision (bf16 keeps only 8 mantissa bits).
                return t.to(device=out.device)
            return out

        return super()._apply(keep_float32, recurse)

    def extra_repr(self) -> str:
        """Shown by repr(): size and parameter count."""
        h, w = self.size
        return f"size=({h}, {w}), num_parameters={self.num_parameters}"
