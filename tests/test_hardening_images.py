"""Evaluation validates images as training does; PNGs are checked from their header; NaN pixels are never saved."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from art_lib.data import load_benchmark
from art_lib.evaluate import evaluate
from art_lib.pixel_prompt import PixelPrompt

DATA = Path(__file__).parent / "data"


def _eval(tiny, image):
    model, proc = tiny
    return evaluate(
        model,
        proc,
        load_benchmark("gsm8k", source=DATA / "gsm8k", limit=1),
        image=image,
        benchmark="gsm8k",
        max_new_tokens=2,
        progress=False,
    )


def _header_only_png(path: Path, h: int, w: int) -> Path:
    """A PNG whose header says h x w but whose pixel data is cut short: decoding it would fail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def test_evaluating_a_250x250_png_is_an_error_naming_the_nearest_valid_sizes(tiny, tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (250, 250), "white").save(path)
    with pytest.raises(ValueError, match=r"250x250 is not a valid size .*nearest valid sizes: 256x256"):
        _eval(tiny, path)
    with pytest.raises(ValueError, match="nearest valid sizes"):  # the same for a PIL image
        _eval(tiny, Image.new("RGB", (250, 250), "white"))


def test_an_oversized_png_is_refused_from_its_header_before_decoding(tiny, tmp_path):
    path = _header_only_png(tmp_path / "big.png", 8000, 8000)
    with pytest.raises(ValueError, match=r"8000x8000 is not a valid size"):
        _eval(tiny, path)
    with pytest.raises(ValueError, match=r"8000x8000 = 64000000 pixels, more than max_pixels"):
        PixelPrompt.from_png(path)


def test_sixteen_bit_and_jpeg_inputs_are_refused_not_converted(tiny, tmp_path):
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((256, 256), 40000, dtype=np.uint16)).save(deep)
    assert Image.open(deep).mode.startswith("I")
    with pytest.raises(ValueError, match="16-bit or float"):
        _eval(tiny, deep)
    fake = tmp_path / "photo.png"
    Image.new("RGB", (256, 256), "white").save(fake, format="JPEG")
    with pytest.raises(ValueError, match="is a JPEG file, not a PNG"):
        _eval(tiny, fake)


def test_a_valid_png_evaluates_as_before(tiny, tmp_path):
    path = PixelPrompt.from_noise(256, seed=1).save_png(tmp_path / "ok.png")
    assert _eval(tiny, path).n == 1
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (256, 256), (10, 20, 30, 0)).save(rgba)  # transparent over white, as in training
    assert _eval(tiny, rgba).n == 1


def test_save_png_refuses_nan_pixels(tmp_path):
    art = PixelPrompt.from_noise(64, seed=0)
    with torch.no_grad():
        art.raw[0, 3, 5] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite"):
        art.save_png(tmp_path / "nan.png")
    assert not list(tmp_path.iterdir())
