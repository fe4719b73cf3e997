"""A differentiable JPEG: libjpeg's quantisation tables, 8x8 block DCT and YCbCr, with straight-through rounding.

`jpeg_like` approximates what PIL's encoder does to an RGB image (4:4:4, baseline tables scaled by quality) so
that EOT training (`art_lib.transforms`) can pass gradients through a JPEG round trip.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .pixel_prompt import as_batch, clamp01

__all__ = ["jpeg_quant_tables", "rgb_to_ycbcr", "ycbcr_to_rgb", "block_dct", "block_idct", "jpeg_like"]

# ITU-T T.81 Annex K.1: the example quantisation tables libjpeg (and so PIL) scales by quality.
# fmt: off
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)
# fmt: on
# JFIF full-range RGB -> YCbCr (the offset 128 is added to Cb and Cr separately).
_RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168735892, -0.331264108, 0.5), (0.5, -0.418687589, -0.081312411))


def jpeg_quant_tables(
    quality: int, device: Any = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(luma, chroma) (8, 8) quantisation tables of libjpeg's jpeg_set_quality(quality, force_baseline=True)."""
    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000 // q if q < 50 else 200 - 2 * q  # IJG jpeg_quality_scaling
    out = []
    for table in (_LUMA_TABLE, _CHROMA_TABLE):
        t = torch.tensor(table, dtype=torch.int64)
        t = ((t * scale + 50) // 100).clamp(1, 255)  # baseline: 8-bit entries
        out.append(t.view(8, 8).to(device=device, dtype=dtype))
    return out[0], out[1]


def _dct_matrix(device: Any, dtype: torch.dtype) -> torch.Tensor:
    """Orthonormal 8-point DCT-II matrix D (8, 8): coefficients = D @ block @ D.T (JPEG's FDCT)."""
    k = torch.arange(8, dtype=torch.float64).view(8, 1)
    n = torch.arange(8, dtype=torch.float64).view(1, 8)
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] = math.sqrt(1 / 8)
    return d.to(device=device, dtype=dtype)


def block_dct(x: torch.Tensor) -> torch.Tensor:
    """8x8 block DCT of planes (..., H, W), H and W multiples of 8; coefficients laid out in place of each block."""
    *lead, h, w = x.shape
    if h % 8 or w % 8:
        raise ValueError(f"block_dct needs sides that are multiples of 8, got {h}x{w}")
    d = _dct_matrix(x.device, x.dtype)
    b = x.reshape(*lead, h // 8, 8, w // 8, 8).transpose(-3, -2)  # (..., H/8, W/8, 8, 8)
    c = d @ b @ d.T
    return c.transpose(-3, -2).reshape(*lead, h, w)


def block_idct(c: torch.Tensor) -> torch.Tensor:
    """Inverse of block_dct: (..., H, W) coefficients -> planes."""
    *lead, h, w = c.shape
    if h % 8 or w % 8:
        raise ValueError(f"block_idct needs sides that are multiples of 8, got {h}x{w}")
    d = _dct_matrix(c.device, c.dtype)
    b = c.reshape(*lead, h // 8, 8, w // 8, 8).transpose(-3, -2)  # (..., H/8, W/8, 8, 8)
    x = d.T @ b @ d
    return x.transpose(-3, -2).reshape(*lead, h, w)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in 0..255 -> JFIF YCbCr in 0..255 (Cb, Cr centred on 128)."""
    m = torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    y = torch.einsum("ij,bjhw->bihw", m, x)
    return y + torch.tensor([0.0, 128.0, 128.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)


def ycbcr_to_rgb(y: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_ycbcr: (B, 3, H, W) YCbCr -> RGB, both in 0..255 (not clamped)."""
    # The exact matrix inverse (not the rounded textbook coefficients) so the colour roundtrip is the identity.
    inv = torch.linalg.inv(torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64)).to(device=y.device, dtype=y.dtype)
    y = y - torch.tensor([0.0, 128.0, 128.0], device=y.device, dtype=y.dtype).view(1, 3, 1, 1)
    return torch.einsum("ij,bjhw->bihw", inv, y)


def _round(x: torch.Tensor, rounding: str) -> torch.Tensor:
    """Differentiable rounding: "ste" (exact forward, identity backward) or "cubic" (Shin & Song 2017)."""
    r = torch.round(x)
    if rounding == "ste":
        return x + (r - x).detach()
    if rounding == "cubic":
        # round(x) + (x - round(x))^3: close to rounding, gradient 3 (x - round(x))^2 (round's own is 0).
        return r + (x - r) ** 3
    raise ValueError(f"unknown rounding {rounding!r}; choose 'ste' or 'cubic'")


def _quantise(planes: torch.Tensor, table: torch.Tensor, rounding: str | None) -> torch.Tensor:
    """DCT, quantise with `table` (None: no quantisation), inverse DCT: (N, H, W) level-shifted planes."""
    c = block_dct(planes)
    if rounding is not None:
        *_, h, w = c.shape
        q = table.repeat(h // 8, w // 8)  # (H, W): the table tiled over the blocks
        c = _round(c / q, rounding) * q
    return block_idct(c)


def jpeg_like(
    pixels: torch.Tensor, quality: int | None = 75, *, subsample: bool = True, rounding: str = "ste"
) -> torch.Tensor:
    """Differentiable JPEG approximation: YCbCr, (4:2:0 chroma), 8x8 DCT, quantise with the IJG tables, back.

    Models what PIL's `img.save(f, "JPEG", quality=q)` (libjpeg, 4:2:0 by default) does to the pixels:
    JFIF YCbCr; chroma averaged over 2x2 when `subsample` (and brought back with the decoder's
    triangle filter, i.e. bilinear); sides edge-padded to whole MCUs; coefficients divided by the
    quality-scaled Annex K tables, rounded (`rounding`: "ste" rounds exactly with an identity gradient,
    "cubic" is the smooth x + (x - round x)^3 surrogate) and multiplied back; inverse DCT; RGB; clamp.
    `quality=None` skips the quantisation (the transform is then the identity up to float error).
    The decoder's final rounding to 8 bits and libjpeg's integer DCT are not modelled.
    """
    x, single = as_batch(pixels)
    b, _, h, w = x.shape
    mcu = 16 if subsample else 8
    ph, pw = -h % mcu, -w % mcu
    xp = x * 255.0
    if ph or pw:
        # libjpeg fills partial MCUs by replicating the last row/column.
        xp = F.pad(xp, (0, pw, 0, ph), mode="replicate")
    ycc = rgb_to_ycbcr(xp) - 128.0  # (B, 3, H', W') level-shifted
    if quality is None:
        luma_t = chroma_t = None
        mode = None
    else:
        luma_t, chroma_t = jpeg_quant_tables(quality, ycc.device, ycc.dtype)
        mode = rounding
    y = _quantise(ycc[:, 0], luma_t, mode)  # (B, H', W')
    chroma = ycc[:, 1:]  # (B, 2, H', W')
    if subsample:
        small = F.avg_pool2d(chroma, 2)  # (B, 2, H'/2, W'/2)
        small = _quantise(small.reshape(b * 2, *small.shape[-2:]), chroma_t, mode).view_as(small)
        # libjpeg's "fancy" h2v2 upsampling weights 3/4, 1/4 with edge replication: bilinear, half-pixel centres.
        chroma = F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False)
    else:
        chroma = _quantise(chroma.reshape(b * 2, *chroma.shape[-2:]), chroma_t, mode).view_as(chroma)
    out = ycbcr_to_rgb(torch.cat([y.unsqueeze(1), chroma], dim=1) + 128.0) / 255.0
    out = clamp01(out[..., :h, :w])
    return out[0] if single else out
