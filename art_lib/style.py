"""Style regularisers for the artwork: stay near the seed icon (L2, SSIM), stay smooth (total variation).

Every function is pure torch and differentiable, on images in [0, 1] shaped (3, H, W) or (B, 3, H, W)
(any channel count C works). A *mask* is (H, W) or (1, H, W), bool or float in [0, 1]; it selects where
a seed-distance term counts (1 = counts, 0 = ignored) and broadcasts over channels and batch.

Use in a training step (the trainer wires it in)::

    if style_active(l2=a, tv=b, ssim=c):          # all weights 0: skip, nothing computed
        reg, terms = style_loss(artwork.pixels(), seed, l2=a, tv=b, ssim=c, mask=mask)
        loss = loss + reg
    ...
    opt.step(); artwork.project_(); freeze_mask_(artwork, seed, frozen)   # keep frozen regions = seed

`ssim` reproduces `skimage.metrics.structural_similarity(x, y, channel_axis=0, data_range=1.0)`
(uniform 7x7 window, sample covariance, mean over the valid region, mean over channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "l2_to_seed",
    "total_variation",
    "ssim",
    "ssim_loss",
    "style_active",
    "style_loss",
    "freeze_mask_",
    "mask_from_seed",
    "box_mask",
]

SizeLike = int | Sequence[int]


def _check_image(x: torch.Tensor, name: str) -> None:
    """Raise ValueError unless x is a floating (C, H, W) or (B, C, H, W) tensor."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor (C, H, W) or (B, C, H, W), got {shape}")


def _mask_like(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(H, W) or (1, H, W) mask -> float (1, H, W) on x's device/dtype, checked against x's spatial size."""
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3 or mask.shape[0] != 1 or tuple(mask.shape[-2:]) != tuple(x.shape[-2:]):
        raise ValueError(
            f"mask must be (H, W) or (1, H, W) matching the image {tuple(x.shape[-2:])}, got {tuple(mask.shape)}"
        )
    return mask.to(device=x.device, dtype=x.dtype)  # (1, H, W)


def l2_to_seed(pixels: torch.Tensor, seed: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared pixel distance to the seed (over the mask's pixels and all channels); scalar."""
    _check_image(pixels, "pixels")
    seed = seed.to(device=pixels.device, dtype=pixels.dtype)
    sq = (pixels - seed) ** 2  # (…, C, H, W); seed broadcasts over a batch
    if mask is None:
        return sq.mean()
    m = _mask_like(mask, pixels)  # (1, H, W)
    weight = m.expand_as(sq)
    # Weighted mean, not sum: the weight of the term does not depend on how large the masked area is.
    # clamp_min: an empty mask gives 0, not 0/0.
    return (sq * weight).sum() / weight.sum().clamp_min(1e-12)


def total_variation(pixels: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV: mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]| over channels (and batch); scalar.

    Means rather than sums so the value (and a sensible weight) does not grow with the image size:
    a constant image gives 0, a one-pixel checkerboard of 0/1 gives 2.
    """
    _check_image(pixels, "pixels")
    dy = (pixels[..., 1:, :] - pixels[..., :-1, :]).abs()  # (…, C, H-1, W)
    dx = (pixels[..., :, 1:] - pixels[..., :, :-1]).abs()  # (…, C, H, W-1)
    return dy.mean() + dx.mean()


def _gaussian_kernel(win_size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (win_size,), as scipy.ndimage.gaussian_filter with radius (win_size-1)//2."""
    r = (win_size - 1) // 2
    t = torch.arange(-r, r + 1, device=like.device, dtype=like.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _window_filter(x: torch.Tensor, win_size: int, gaussian: bool, sigma: float) -> torch.Tensor:
    """Local (weighted) mean over win_size x win_size windows, valid region only.

    (N, C, H, W) -> (N, C, H-w+1, W-w+1).
    """
    if not gaussian:
        # skimage filters with a uniform filter (reflect padding) and then crops (win_size-1)//2 on every side;
        # on the kept region no window touches the padding, so an unpadded average pool is the same numbers.
        return F.avg_pool2d(x, kernel_size=win_size, stride=1)
    c = x.shape[1]
    k = _gaussian_kernel(win_size, sigma, x)
    # Separable, depthwise: a vertical then a horizontal pass per channel.
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 7,
    gaussian: bool = False,
    K1: float = 0.01,
    K2: float = 0.03,
    *,
    sigma: float = 1.5,
    use_sample_covariance: bool = True,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean SSIM as skimage's structural_similarity(x, y, channel_axis=0); scalar for (C, H, W), (B,) for a batch.

    Defaults match skimage's defaults: a uniform `win_size` window, sample covariance
    (`NP / (NP - 1)`), SSIM averaged over the region at least `(win_size - 1) // 2` from the border,
    then over channels. `gaussian=True, win_size=11, use_sample_covariance=False` gives Wang et al.'s
    Gaussian-weighted SSIM as skimage's `gaussian_weights=True` does (sigma 1.5, truncate 3.5).
    `mask` (H, W) weights the SSIM map (cropped the same way) instead of a plain mean.
    """
    _check_image(x, "x")
    _check_image(y, "y")
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and positive, got {win_size}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images must be at least {win_size}x{win_size} (win_size), got {tuple(x.shape[-2:])}")
    y = y.to(device=x.device, dtype=x.dtype)
    batched = x.ndim == 4 or y.ndim == 4
    xb = x if x.ndim == 4 else x.unsqueeze(0)  # (B, C, H, W)
    yb = y if y.ndim == 4 else y.unsqueeze(0)
    xb, yb = torch.broadcast_tensors(xb, yb)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return _window_filter(t, win_size, gaussian, sigma)

    n_pix = win_size**2
    cov_norm = n_pix / (n_pix - 1) if use_sample_covariance else 1.0
    ux, uy = filt(xb), filt(yb)
    vx = cov_norm * (filt(xb * xb) - ux * ux)
    vy = cov_norm * (filt(yb * yb) - uy * uy)
    vxy = cov_norm * (filt(xb * yb) - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))  # (B, C, h, w)
    if mask is None:
        out = s.mean(dim=(-3, -2, -1))  # (B,)
    else:
        pad = (win_size - 1) // 2
        h, w_ = x.shape[-2:]
        m = _mask_like(mask, x)[:, pad : h - pad, pad : w_ - pad]  # (1, h, w): the SSIM map's crop
        w = m.expand_as(s)
        out = (s * w).sum(dim=(-3, -2, -1)) / w.sum(dim=(-3, -2, -1)).clamp_min(1e-12)
    return out if batched else out[0]


def ssim_loss(x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """1 - ssim(x, y, **kwargs): 0 for identical images, up to 2 for anti-correlated ones."""
    return 1.0 - ssim(x, y, **kwargs)


_ssim = ssim  # style_loss's `ssim` weight shadows the function inside it


def style_active(l2: float = 0.0, tv: float = 0.0, ssim: float = 0.0) -> bool:
    """True when any style weight is non-zero; when False the trainer should not call style_loss at all."""
    return any(float(w) != 0.0 for w in (l2, tv, ssim))


def style_loss(
    pixels: torch.Tensor,
    seed: torch.Tensor | None,
    *,
    l2: float = 0.0,
    tv: float = 0.0,
    ssim: float = 0.0,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum l2 * l2_to_seed + tv * total_variation + ssim * ssim_loss, and each active term's raw value.

    Terms with weight 0 are not computed (they add nothing to the graph). With every weight 0 the total
    is an exact scalar 0 with no graph, so `loss + total` equals `loss` bit for bit; better still,
    guard the call with `style_active` and skip it. `mask` restricts the seed terms (L2, SSIM)
    to where the artwork should resemble the seed; TV is a smoothness prior on the whole image.
    For a batch the terms are means over it.
    """
    _check_image(pixels, "pixels")
    for name, w in (("l2", l2), ("tv", tv), ("ssim", ssim)):
        if float(w) < 0:
            raise ValueError(f"style weight {name} must be >= 0, got {w}")
    terms: dict[str, float] = {}
    total = torch.zeros((), dtype=pixels.dtype, device=pixels.device)
    if not style_active(l2, tv, ssim):
        return total, terms
    if (l2 or ssim) and seed is None:
        raise ValueError("the l2 and ssim terms need the seed image")
    parts = []
    if l2:
        v = l2_to_seed(pixels, seed, mask)
        parts.append(float(l2) * v)
        terms["style_l2"] = float(v.detach())
    if tv:
        v = total_variation(pixels)
        parts.append(float(tv) * v)
        terms["style_tv"] = float(v.detach())
    if ssim:
        v = ssim_loss(pixels, seed, mask=mask).mean()
        parts.append(float(ssim) * v)
        terms["style_ssim_loss"] = float(v.detach())
    total = torch.stack(parts).sum()
    terms["style_total"] = float(total.detach())
    return total, terms


@torch.no_grad()
def freeze_mask_(pixels_param: Any, seed: torch.Tensor, mask: torch.Tensor) -> Any:
    """Copy the seed into the masked region of the parameter in place (call after each optimiser step).

    `pixels_param`: the (3, H, W) parameter tensor, or a PixelPrompt (its `raw`). A bool mask copies
    exactly (the frozen pixels stay bit-identical to the seed); a float mask in [0, 1] blends
    `m * seed + (1 - m) * pixels`. Returns `pixels_param`.
    """
    target = getattr(pixels_param, "raw", pixels_param)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"expected a tensor or a PixelPrompt, got {type(pixels_param).__name__}")
    seed = seed.to(device=target.device, dtype=target.dtype)
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)  # (1, H, W)
    if tuple(mask.shape[-2:]) != tuple(target.shape[-2:]):
        raise ValueError(f"mask {tuple(mask.shape)} does not match the pixels {tuple(target.shape)}")
    mask = mask.to(target.device)
    if mask.dtype == torch.bool:
        # torch.where, not a blend: frozen pixels must equal the seed exactly, not up to rounding.
        target.copy_(torch.where(mask, seed, target))
    else:
        m = mask.to(target.dtype)
        target.copy_(m * seed + (1.0 - m) * target)
    return pixels_param


def mask_from_seed(seed: torch.Tensor, threshold: float = 0.1, background: float = 1.0) -> torch.Tensor:
    """Bool (H, W) mask of the seed's drawn pixels: any channel farther than threshold from the background.

    The seed icons are drawn on pure white (background 1.0), so this selects the icon itself;
    `~mask` selects the empty background.
    """
    _check_image(seed, "seed")
    if seed.ndim == 4:
        if seed.shape[0] != 1:
            raise ValueError("mask_from_seed takes one seed image, not a batch")
        seed = seed[0]
    return (seed - background).abs().amax(dim=0) > threshold  # (H, W) bool


def box_mask(size: SizeLike, box: Sequence[int]) -> torch.Tensor:
    """Bool (H, W) mask, True inside box = (top, left, bottom, right) in pixels (half-open, clipped to the image)."""
    if isinstance(size, int):
        h, w = size, size
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    if len(box) != 4:
        raise ValueError(f"box must be (top, left, bottom, right), got {box!r}")
    top, left, bottom, right = (int(b) for b in box)
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[max(0, top) : max(0, bottom), max(0, left) : max(0, right)] = True
    return mask
