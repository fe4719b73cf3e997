"""Differentiable, bit-exact port of the Qwen2-VL image processor (used by Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5).

The pixel path of the official processor (`transformers` `Qwen2VLImageProcessorPil` and its torchvision twin
`Qwen2VLImageProcessor`) for a uint8 RGB image `k` is:

1. `smart_resize` to sides that are multiples of `patch_size * merge_size` with area in [min_pixels, max_pixels]
   (a no-op on the pixels when the size already satisfies it: Pillow and torchvision both return the image as is);
2. rescale and normalise: PIL backend `float32(float64(k) * rescale_factor)` then `(x - mean) / std` in float32;
   torchvision backend fuses both into `(float32(k) - mean / rescale_factor) / (std / rescale_factor)`;
3. repeat the frame `temporal_patch_size` times and cut it into `patch_size` squares, ordered so that each
   `merge_size x merge_size` block of patches is contiguous: rows of `(C, T, patch, patch)` flattened.

`preprocess_image` takes the image as a float tensor `(3, H, W)` in [0, 1] (what is being optimised) and replays
steps 2 and 3 with torch ops in the same float order, so for `pixels = k / 255` (computed in float32 or float64)
its `pixel_values` equal the official output bit for bit, and gradients flow back to every pixel.

Step 1 is validated, never replayed: resampling is not differentiable in the official (uint8, Pillow) form, and an
image the processor resizes is no longer the image that was optimised. So a size that `smart_resize` would change
raises a ValueError naming the nearest valid sizes; on a valid size the pixels the model sees are exactly the
optimised ones, and the same image saved as a PNG goes through the official processor unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["preprocess_image", "valid_size", "nearest_valid_sizes", "patch_geometry", "num_visual_tokens"]


def _image_processor(processor: Any) -> Any:
    """The image processor itself, given either it or a full multimodal processor holding it."""
    return getattr(processor, "image_processor", None) or processor


def _size_entry(size: Any, *keys: str) -> int | None:
    """First of `keys` set in a processor `size` (a SizeDict or a plain dict)."""
    if size is None:
        return None
    for key in keys:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        if value is not None:
            return int(value)
    return None


def _per_channel(value: Any, name: str) -> tuple[float, float, float]:
    """Image mean/std as three floats (the processor allows a single float for all channels)."""
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"image processor {name} must have 3 entries (RGB), got {values}")
    return values


def patch_geometry(image_processor: Any) -> dict:
    """Patch layout, size limits and normalisation read from the processor (never hard-coded)."""
    proc = _image_processor(image_processor)
    patch_size = int(proc.patch_size)
    merge_size = int(proc.merge_size)
    size = getattr(proc, "size", None)
    # Current configs say shortest_edge/longest_edge; older ones said min_pixels/max_pixels.
    min_pixels = _size_entry(size, "shortest_edge", "min_pixels")
    max_pixels = _size_entry(size, "longest_edge", "max_pixels")
    if min_pixels is None:
        min_pixels = getattr(proc, "min_pixels", None)
    if max_pixels is None:
        max_pixels = getattr(proc, "max_pixels", None)
    do_resize = bool(getattr(proc, "do_resize", True))
    if do_resize and (min_pixels is None or max_pixels is None):
        raise ValueError(f"image processor size must give min and max pixels, got {size!r}")
    return {
        "patch_size": patch_size,
        "merge_size": merge_size,
        "temporal_patch_size": int(proc.temporal_patch_size),
        "factor": patch_size * merge_size,
        "min_pixels": None if min_pixels is None else int(min_pixels),
        "max_pixels": None if max_pixels is None else int(max_pixels),
        "mean": _per_channel(proc.image_mean, "image_mean"),
        "std": _per_channel(proc.image_std, "image_std"),
        "rescale_factor": float(getattr(proc, "rescale_factor", 1 / 255)),
        "do_rescale": bool(getattr(proc, "do_rescale", True)),
        "do_normalize": bool(getattr(proc, "do_normalize", True)),
        "do_resize": do_resize,
        # "pil" or "torchvision": the two backends order their float ops differently.
        "backend": str(getattr(proc, "backend", "pil")),
    }


def _processor_size(h: int, w: int, geo: dict) -> tuple[int, int] | None:
    """The (H, W) the official processor would turn an h x w image into; None if it would refuse it."""
    if not geo["do_resize"]:
        return (h, w)
    # The official function, so validity can never drift from what the processor does.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    try:
        resized = smart_resize(h, w, factor=geo["factor"], min_pixels=geo["min_pixels"], max_pixels=geo["max_pixels"])
    except ValueError:  # aspect ratio over 200
        return None
    return (int(resized[0]), int(resized[1]))


def _valid(h: int, w: int, geo: dict) -> bool:
    """True when the processor keeps an h x w image as is and can patchify it."""
    if h <= 0 or w <= 0 or h % geo["factor"] or w % geo["factor"]:
        return False
    return _processor_size(h, w, geo) == (h, w)


def valid_size(h: int, w: int, image_processor: Any) -> bool:
    """True when the official processor would pass an h x w image through without resizing it."""
    return _valid(int(h), int(w), patch_geometry(image_processor))


def _nearest(h: int, w: int, geo: dict, limit: int) -> list[tuple[int, int]]:
    """Valid sizes nearest to h x w (by |dH| + |dW|), at most `limit`."""
    f = geo["factor"]
    if h <= 0 or w <= 0:
        return []

    def around(x: float) -> set[int]:
        """Multiples of the factor just below and just above x (at least one factor)."""
        return {max(f, math.floor(x / f) * f), max(f, math.ceil(x / f) * f)}

    candidates = {(a, b) for a in around(h) for b in around(w)}
    if geo["do_resize"]:
        area = h * w
        # Past an area bound the neighbours above may be invalid too: rescale to that bound, keeping the aspect.
        lo, hi = geo["min_pixels"], geo["max_pixels"]
        bound = lo if area < lo else hi if area > hi else None
        if bound is not None:
            s = math.sqrt(bound / area)
            candidates |= {(a, b) for a in around(h * s) for b in around(w * s)}
        target = _processor_size(h, w, geo)
        if target is not None:
            candidates.add(target)
    valid = [c for c in candidates if _valid(*c, geo)]
    valid.sort(key=lambda c: (abs(c[0] - h) + abs(c[1] - w), abs(c[0] * c[1] - h * w), c))
    return valid[:limit]


def nearest_valid_sizes(h: int, w: int, image_processor: Any, limit: int = 4) -> list[tuple[int, int]]:
    """Valid (H, W) sizes nearest to h x w by |dH| + |dW|, nearest first (h x w itself first when valid)."""
    return _nearest(int(h), int(w), patch_geometry(image_processor), limit)


def _size_error(h: int, w: int, geo: dict) -> ValueError:
    """The ValueError for an h x w image the processor would resize (or refuse)."""
    nearest = ", ".join(f"{a}x{b}" for a, b in _nearest(h, w, geo, 4)) or "none found"
    if geo["do_resize"]:
        rule = f"sides must be multiples of {geo['factor']} and area within [{geo['min_pixels']}, {geo['max_pixels']}]"
        target = _processor_size(h, w, geo)
        fate = "refuse it" if target is None else f"resize it to {target[0]}x{target[1]}"
    else:
        rule = f"sides must be multiples of {geo['factor']}"
        fate = "fail to patchify it"
    return ValueError(
        f"{h}x{w} is not a valid size for this processor ({rule}); nearest valid sizes: {nearest} "
        f"(sizes are HxW; the official processor would {fate}, so pass a valid size instead of resampling)"
    )


def num_visual_tokens(h: int, w: int, image_processor: Any, *, resize: bool = False) -> int:
    """Tokens the LLM sees for a valid h x w image: grid_h * grid_w // merge_size**2.

    With `resize=True` any size is accepted and counted at the size the official processor resizes it to
    (what an engine does with a user's file); otherwise a size the processor would change raises.
    """
    geo = patch_geometry(image_processor)
    h, w = int(h), int(w)
    if resize and (seen := _processor_size(h, w, geo)) is not None:
        h, w = seen
    if not _valid(h, w, geo):
        raise _size_error(h, w, geo)
    grid_h, grid_w = h // geo["patch_size"], w // geo["patch_size"]
    return grid_h * grid_w // geo["merge_size"] ** 2


def image_tokens(image: dict | None, image_processor: Any) -> int:
    """Visual tokens of one preprocessed image `{"pixel_values", "image_grid_thw"}` (0 for None), from its grid."""
    if image is None:
        return 0
    _, grid_h, grid_w = (int(x) for x in image["image_grid_thw"].reshape(-1, 3)[0])
    patch = patch_geometry(image_processor)["patch_size"]
    return num_visual_tokens(grid_h * patch, grid_w * patch, image_processor)


def _check_pixels(pixels: torch.Tensor, check_values: bool) -> None:
    """Raise ValueError unless pixels is a finite float (3, H, W) tensor in [0, 1]."""
    if not isinstance(pixels, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (3, H, W), got {type(pixels).__name__}")
    if pixels.ndim != 3 or pixels.shape[0] != 3 or pixels.numel() == 0:
        raise ValueError(f"expected pixels of shape (3, H, W) (RGB, channels first), got {tuple(pixels.shape)}")
    if not pixels.is_floating_point():
        raise ValueError(f"expected a float tensor (3, H, W) in [0, 1], got dtype {pixels.dtype} (divide uint8 by 255)")
    if not check_values:
        return
    finite = torch.isfinite(pixels)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"pixels must be finite, found {bad} NaN/inf value(s) of {pixels.numel()}")
    lo, hi = (float(v) for v in torch.aminmax(pixels.detach()))
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"pixels must lie in [0, 1], found min {lo!r} and max {hi!r}")


def _normalised(x: torch.Tensor, geo: dict) -> torch.Tensor:
    """Rescale + normalise (3, H, W) float32 pixels in [0, 1] with the float ops of the processor's backend."""
    mean = torch.tensor(geo["mean"], dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(geo["std"], dtype=torch.float32, device=x.device).view(3, 1, 1)
    rf = geo["rescale_factor"]
    # Both processors start from the uint8 value k; k = x * 255 is exact in float32 for x = float32(k / 255).
    if geo["backend"] == "torchvision":
        k = x * 255.0
        if geo["do_rescale"] and geo["do_normalize"]:
            # TorchvisionBackend._fuse_mean_std_and_rescale_factor: mean, std scaled in float32, then sub_ / div_.
            return (k - mean * (1.0 / rf)) / (std * (1.0 / rf))
        if geo["do_normalize"]:
            return (k - mean) / std
        return k * rf if geo["do_rescale"] else k
    # PIL backend: rescale in float64 then round to float32, then (x - mean) / std in float32.
    if geo["do_rescale"] and rf == 1 / 255:
        # float32(float64(k) * (1/255)) == float32(k / 255) for every k in 0..255, so x already is the rescaled
        # image: skip the round trip (no float64, no ulp noise on the optimised, unquantised pixels).
        rescaled = x
    elif geo["do_rescale"]:
        rescaled = ((x * 255.0).double() * rf).float()  # float64 as np_rescale does (not on MPS)
    else:
        rescaled = x * 255.0
    return (rescaled - mean) / std if geo["do_normalize"] else rescaled


def preprocess_image(pixels: torch.Tensor, image_processor: Any, *, check_values: bool = True) -> dict:
    """Differentiable twin of `image_processor(images=k)` for pixels = k / 255: pixel_values and image_grid_thw.

    check_values=False skips the finite / [0, 1] scan (a device sync) for hot loops that clamp the pixels anyway.
    """
    _check_pixels(pixels, check_values)
    geo = patch_geometry(image_processor)
    _, h, w = pixels.shape
    if not _valid(h, w, geo):
        raise _size_error(h, w, geo)

    x = _normalised(pixels.to(torch.float32), geo)  # (3, H, W) float32, normalised
    c = x.shape[0]
    p, m, t = geo["patch_size"], geo["merge_size"], geo["temporal_patch_size"]
    grid_h, grid_w = h // p, w // p

    # Same split and order as the processor's patchify: each merge_size x merge_size block of patches is contiguous
    # (the vision tower's merger folds it into one LLM token), rows are (C, T, patch, patch).
    x = x.reshape(c, grid_h // m, m, p, grid_w // m, m, p)
    x = x.permute(1, 4, 2, 5, 0, 3, 6)  # (grid_h/m, grid_w/m, m, m, C, P, P)
    # One still image is a clip of temporal_patch_size identical frames.
    x = x.unsqueeze(5).expand(-1, -1, -1, -1, -1, t, -1, -1)  # (grid_h/m, grid_w/m, m, m, C, T, P, P)
    pixel_values = x.reshape(grid_h * grid_w, c * t * p * p)  # (N, C*T*P*P) float32

    image_grid_thw = torch.tensor([[1, grid_h, grid_w]], dtype=torch.long, device=pixels.device)  # (1, 3)
    return {"pixel_values": pixel_values, "image_grid_thw": image_grid_thw}
