"""Transport evaluation: does the learned artwork survive the re-encodings an image meets on its way to a model?

`transport` re-encodes the artwork PNG with PIL the way an app, a CDN or a user might (JPEG at
several qualities, a resize and back, a 256-colour palette), and writes the decoded RGB result as a
lossless PNG. `evaluate_transports` scores each version with `art_lib.evaluate.evaluate`,
i.e. through the official processor, exactly as a served image would be.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay out of import time
    import pandas as pd
    from PIL import Image

__all__ = ["TRANSPORTS", "DEFAULT_KINDS", "transport", "transported_image", "other_valid_size", "evaluate_transports"]

TRANSPORTS = ("none", "jpeg95", "jpeg75", "jpeg50", "resize", "palette")
DEFAULT_KINDS = TRANSPORTS
_JPEG_QUALITY = {"jpeg95": 95, "jpeg75": 75, "jpeg50": 50}


def other_valid_size(
    h: int, w: int, image_processor: Any = None, scales: Sequence[float] = (0.75, 1.25, 0.5, 1.5)
) -> tuple[int, int]:
    """A size the processor accepts as is, other than h x w.

    The nearest valid size to h x w scaled by the first scale that gives one.

    Without a processor the packaged Qwen3.5 image-processor config is used (factor 32, area >= 256*256).
    """
    from art_lib.preprocess import nearest_valid_sizes

    if image_processor is None:
        image_processor = _default_image_processor()
    for s in scales:
        for cand in nearest_valid_sizes(max(1, round(h * s)), max(1, round(w * s)), image_processor, limit=8):
            if tuple(cand) != (h, w):
                return (int(cand[0]), int(cand[1]))
    raise ValueError(f"no valid size other than {h}x{w} near scales {tuple(scales)}")


def _default_image_processor() -> Any:
    """The published Qwen3.5 image processor config shipped with the package (no download)."""
    from transformers import AutoImageProcessor

    from art_lib.models import reference_dir

    return AutoImageProcessor.from_pretrained(reference_dir("qwen3_5", "0.8B"))


def transported_image(img: Image.Image, kind: str, image_processor: Any = None) -> Image.Image:
    """The RGB image a reader decodes after `kind` re-encoding of `img` (PIL only)."""
    from PIL import Image

    rgb = img.convert("RGB")
    if kind == "none":
        return rgb.copy()
    if kind in _JPEG_QUALITY:
        buf = io.BytesIO()
        # PIL's defaults otherwise (4:2:0 chroma subsampling, baseline, libjpeg's tables): a plain save.
        rgb.save(buf, format="JPEG", quality=_JPEG_QUALITY[kind])
        buf.seek(0)
        with Image.open(buf) as jpg:
            return jpg.convert("RGB")
    if kind == "resize":
        h, w = rgb.height, rgb.width
        th, tw = other_valid_size(h, w, image_processor)
        # PIL sizes are (W, H).
        return rgb.resize((tw, th), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    if kind == "palette":
        # quantize(256) on RGB is median cut without dithering; back to RGB as a reader would load it.
        return rgb.quantize(colors=256).convert("RGB")
    raise ValueError(f"unknown transport {kind!r}; choose from {TRANSPORTS}")


def transport(
    png_path: str | os.PathLike, kind: str, out_path: str | os.PathLike, *, image_processor: Any = None
) -> Path:
    """Re-encode the PNG with `kind` (see TRANSPORTS), write the decoded RGB image as a lossless PNG, return out_path.

    The decoded pixels are stored losslessly so that loading out_path gives exactly what a JPEG /
    palette / resize reader would see; the source's text metadata is kept, with `transport=kind` added.
    `image_processor` picks the intermediate size of "resize" (default: the packaged Qwen3.5 config).
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    if kind not in TRANSPORTS:
        raise ValueError(f"unknown transport {kind!r}; choose from {TRANSPORTS}")
    with Image.open(png_path) as src:
        src.load()
        text = dict(getattr(src, "text", None) or {})
        out = transported_image(src, kind, image_processor=getattr(image_processor, "image_processor", image_processor))
    info = PngInfo()
    for key, value in {**text, "transport": kind}.items():
        info.add_text(str(key), str(value), zip=len(str(value)) > 1024)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out.save(out_path, format="PNG", pnginfo=info)
    return out_path


def _mean_abs_change(a: str | os.PathLike, b: str | os.PathLike) -> tuple[float, float]:
    """(mean, max) |pixel difference| of two images in 8-bit levels (RGB)."""
    import numpy as np
    from PIL import Image

    with Image.open(a) as ia, Image.open(b) as ib:
        x = np.asarray(ia.convert("RGB"), dtype=np.int16)
        y = np.asarray(ib.convert("RGB"), dtype=np.int16)
    d = np.abs(x - y)
    return float(d.mean()), float(d.max())


def evaluate_transports(
    model: Any,
    processor: Any,
    examples: Sequence[dict],
    png: str | os.PathLike,
    benchmark: str,
    kinds: Sequence[str] = DEFAULT_KINDS,
    *,
    out_dir: str | os.PathLike | None = None,
    return_results: bool = False,
    **eval_kw: Any,
) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """Evaluate the artwork after each transport; one row per kind.

    Columns: kind, n, correct, accuracy, ci_low, ci_high, mean_abs_change and max_abs_change (8-bit
    levels, vs the original PNG), path. Each transported file is scored by
    `art_lib.evaluate.evaluate` (opened with PIL, through the official processor). Files go to
    `out_dir` (kept) or a temporary folder (removed). Extra keyword arguments go to `evaluate`.
    """
    import pandas as pd

    from art_lib.evaluate import evaluate

    unknown = [k for k in kinds if k not in TRANSPORTS]
    if unknown:
        raise ValueError(f"unknown transports {unknown}; choose from {TRANSPORTS}")
    eval_kw.pop("label", None)  # each run is labelled with its transport
    examples = list(examples)
    image_processor = getattr(processor, "image_processor", processor)
    stem = Path(png).stem
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        for kind in kinds:
            path = transport(png, kind, folder / f"{stem}.{kind}.png", image_processor=image_processor)
            mean_change, max_change = _mean_abs_change(png, path)
            res = evaluate(model, processor, examples, image=path, benchmark=benchmark, label=kind, **eval_kw)
            results[kind] = res
            rows.append(
                {
                    "kind": kind,
                    "n": res.n,
                    "correct": res.k,
                    "accuracy": res.accuracy,
                    "ci_low": res.ci_low,
                    "ci_high": res.ci_high,
                    "mean_abs_change": mean_change,
                    "max_abs_change": max_change,
                    "path": str(path) if out_dir is not None else None,
                }
            )
    df = pd.DataFrame(rows)
    return (df, results) if return_results else df
