"""Evaluation validates images as training does; PNGs are checked from their header; NaN pixels are never saved."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from art_lib.data import load_benchmark
from art_lib.evaluate import evaluate
from art_lib.pixel_prompt import PixelPrompt, read_png_metadata

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


# --------------------------------------------------------------------------- crafted PNG metadata


def _png_with_text(path: Path, size: tuple[int, int] = (8, 8), **text: str) -> Path:
    """A PNG of `size` (W, H) with these text chunks, written as an attacker would (no save_png checks)."""
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGB", size, "white").save(path, pnginfo=info)
    return path


@pytest.mark.parametrize(
    "json_keys, value, error",
    [
        ("123", None, r"'art_lib_json_keys' must be a JSON list of key names, got int"),
        ("null", None, r"'art_lib_json_keys' must be a JSON list of key names, got NoneType"),
        ('["config", 7]', "{}", r"'art_lib_json_keys' must be a JSON list of key names, got list"),
        ('["config"]', "[" * 100_000 + "]" * 100_000, r"'config' is JSON nested too deeply"),
        ('["config"]', "{bad", r"'config' is not valid JSON"),
        ('["config"]', json.dumps("x" * (2 << 20)), r"'config' is longer than 1048576 characters"),
    ],
)
def test_crafted_png_metadata_is_a_value_error_naming_file_and_key(tmp_path, json_keys, value, error):
    text = {"art_lib_version": "0", "art_lib_json_keys": json_keys} | ({"config": value} if value else {})
    path = _png_with_text(tmp_path / "crafted.png", **text)
    for read in (PixelPrompt.from_png, read_png_metadata):
        with pytest.raises(ValueError, match=rf"crafted\.png'?: metadata {error}"):
            read(path)


def test_an_animated_png_is_refused_not_cut_to_its_first_frame(tmp_path):
    path = tmp_path / "anim.png"
    red, blue = (PixelPrompt.from_color(16, c).to_pil() for c in ("red", "blue"))
    red.save(path, save_all=True, append_images=[blue])
    for read in (PixelPrompt.from_png, read_png_metadata):
        with pytest.raises(ValueError, match=r"anim\.png' is an animated PNG \(2 frames\)"):
            read(path)


def test_an_animated_image_is_neither_scored_nor_a_seed_as_its_first_frame(tmp_path):
    from art_lib.evaluate import load_image
    from art_lib.models import tiny_processor

    red, blue = (PixelPrompt.from_color(64, c).to_pil() for c in ("red", "blue"))
    red.save(tmp_path / "anim.png", save_all=True, append_images=[blue])
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[blue])
    with pytest.raises(ValueError, match=r"anim\.png' is an animated PNG \(2 frames\)"):
        load_image(tmp_path / "anim.png", tiny_processor())
    with pytest.raises(ValueError, match=r"anim\.gif' is an animated GIF \(2 frames\)"):
        PixelPrompt.from_image(tmp_path / "anim.gif")
    red.save(tmp_path / "still.gif")
    assert PixelPrompt.from_image(tmp_path / "still.gif").size == (64, 64)


@pytest.mark.parametrize("claim", ["512x512", "64 x 64", "big"])
def test_an_image_size_in_metadata_that_is_not_the_image_size_is_refused(tmp_path, claim):
    path = _png_with_text(tmp_path / "liar.png", size=(64, 48), art_lib_version="0", image_size=claim)
    for read in (PixelPrompt.from_png, read_png_metadata):
        with pytest.raises(
            ValueError, match=rf"liar\.png'?: metadata 'image_size' says .*{claim}.* the image is 48x64"
        ):
            read(path)
    honest = _png_with_text(tmp_path / "honest.png", size=(64, 48), art_lib_version="0", image_size="48x64")
    assert PixelPrompt.from_png(honest).size == (48, 64)


def test_metadata_a_png_could_not_read_back_is_not_saved(tmp_path):
    art = PixelPrompt.from_noise(8, seed=0)
    for value in ("x" * (2 << 20), {"note": "x" * (2 << 20)}):
        with pytest.raises(ValueError, match=r"value for 'note' is longer than 1048576 bytes"):
            art.save_png(tmp_path / "big.png", note=value)
    assert not list(tmp_path.iterdir())
    near = "é" * 400_000  # 800,000 bytes: saved compressed and read back whole
    assert PixelPrompt.from_png(art.save_png(tmp_path / "ok.png", note=near)).metadata["note"] == near
