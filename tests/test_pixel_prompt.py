"""Tests for art_lib.pixel_prompt: the learnable artwork and its PNG persistence."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import art_lib
from art_lib.icons import seed_icon
from art_lib.pixel_prompt import PixelPrompt, read_png_metadata


def _rgb_image(h: int = 20, w: int = 30, seed: int = 0) -> Image.Image:
    """A random 8-bit RGB PIL image of size (H, W)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The float32 bit patterns, for bitwise comparison."""
    return t.detach().contiguous().view(torch.int32)


# ---------------------------------------------------------------- PNG round trip


@pytest.mark.parametrize(
    "make", [lambda: PixelPrompt.from_noise((17, 23), seed=3), lambda: PixelPrompt.from_icon("tools", 48)]
)
def test_png_round_trip_is_bitwise_exact_for_8bit_pixels(tmp_path: Path, make) -> None:
    pp = make()
    loaded = PixelPrompt.from_png(pp.save_png(tmp_path / "art.png"))
    assert torch.equal(_bits(loaded.pixels()), _bits(pp.pixels()))


def test_png_round_trip_after_training_step_matches_quantised_pixels(tmp_path: Path) -> None:
    pp = PixelPrompt.from_noise(16, seed=1)
    with torch.no_grad():
        pp.raw.add_(torch.randn(pp.raw.shape, generator=torch.Generator().manual_seed(0)) * 0.01)
    pp.project_()
    loaded = PixelPrompt.from_png(pp.save_png(tmp_path / "art.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "art.png")), pp.to_uint8())
    # Loading re-quantises to k/255: the same bytes as to_uint8(), and within half a step.
    expected = torch.from_numpy(pp.to_uint8()).permute(2, 0, 1).float() / 255.0
    assert torch.equal(loaded.pixels(), expected)
    assert (loaded.pixels() - pp.pixels()).abs().max() <= 0.5 / 255 + 1e-7


def test_saved_png_is_lossless_8bit_rgb(tmp_path: Path) -> None:
    pp = PixelPrompt.from_noise((9, 13), seed=0)
    path = pp.save_png(tmp_path / "art.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (13, 9)
        np.testing.assert_array_equal(np.asarray(img), pp.to_uint8())


def test_metadata_round_trips_with_types(tmp_path: Path) -> None:
    meta = {
        "model_id": "Qwen/Qwen3.5-0.8B",
        "objective": "sft",
        "step": 1200,
        "loss": 0.125,
        "config": {"lr": 0.01, "tasks": ["math", "tools"]},
        "done": True,
        "note": None,
        "numeric_string": "123",  # a str stays a str, not parsed as a number
        "unicode": "artwork ÷ × ✓",
        "long": "x" * 5000,
    }
    path = PixelPrompt.from_color(8, "white").save_png(tmp_path / "art.png", **meta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own PNG must load without a warning
        loaded = PixelPrompt.from_png(path)
    assert loaded.metadata["art_lib_version"] == art_lib.__version__
    assert loaded.metadata["image_size"] == "8x8"
    for key, value in meta.items():
        assert loaded.metadata[key] == value
        assert type(loaded.metadata[key]) is type(value)
    assert read_png_metadata(path) == loaded.metadata


def test_image_size_metadata_is_height_by_width(tmp_path: Path) -> None:
    path = PixelPrompt.from_noise((5, 7)).save_png(tmp_path / "a.png")
    assert read_png_metadata(path)["image_size"] == "5x7"


def test_reserved_or_unserialisable_metadata_is_rejected(tmp_path: Path) -> None:
    pp = PixelPrompt.from_noise(4)
    with pytest.raises(ValueError, match="reserved"):
        pp.save_png(tmp_path / "a.png", image_size="1x1")
    with pytest.raises(ValueError, match="JSON"):
        pp.save_png(tmp_path / "a.png", obj=object())
    assert not (tmp_path / "a.png").exists()


def test_foreign_png_loads_with_warning(tmp_path: Path) -> None:
    img = _rgb_image(6, 9)
    img.save(tmp_path / "foreign.png")
    with pytest.warns(UserWarning, match="no art_lib metadata"):
        pp = PixelPrompt.from_png(tmp_path / "foreign.png")
    assert torch.equal(pp.pixels(), torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0)
    assert read_png_metadata(tmp_path / "foreign.png") == {}


def test_from_png_rejects_non_png(tmp_path: Path) -> None:
    _rgb_image().save(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="not a PNG"):
        PixelPrompt.from_png(tmp_path / "x.jpg")


def test_save_png_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "sub" / "art.png"
    first = PixelPrompt.from_color(4, (10, 20, 30))
    assert first.save_png(target) == target  # creates the folder, returns the path
    # Overwriting replaces the file.
    PixelPrompt.from_color(4, (40, 50, 60)).save_png(target)
    assert np.asarray(Image.open(target))[0, 0].tolist() == [40, 50, 60]

    # A failure before the rename leaves the old file intact and no temp file behind.
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        PixelPrompt.from_color(4, (70, 80, 90)).save_png(target)
    assert np.asarray(Image.open(target))[0, 0].tolist() == [40, 50, 60]
    assert sorted(p.name for p in target.parent.iterdir()) == ["art.png"]


# ---------------------------------------------------------------- inputs


def test_all_input_types_give_the_same_pixels(tmp_path: Path) -> None:
    img = _rgb_image(12, 10)
    img.save(tmp_path / "in.png")
    arr = np.asarray(img)  # (H, W, 3) uint8
    chw = torch.from_numpy(arr.copy()).permute(2, 0, 1)  # (3, H, W) uint8
    ref = PixelPrompt.from_image(img).pixels()
    for source in (
        tmp_path / "in.png",
        str(tmp_path / "in.png"),
        arr,
        arr.astype(np.float64) / 255,
        chw,
        chw.float() / 255,
    ):
        assert torch.equal(PixelPrompt.from_image(source).pixels(), ref), type(source)


def test_uint8_input_gives_exact_k_over_255() -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)
    px = PixelPrompt.from_image(arr).pixels()
    assert torch.equal(px * 255, torch.round(px * 255))
    assert px.min() == 0.0 and px.max() == 1.0


def test_float_input_precision_is_kept_without_resize() -> None:
    arr = np.random.default_rng(0).random((5, 6, 3), dtype=np.float32)
    px = PixelPrompt.from_image(arr).pixels()
    assert torch.equal(px, torch.from_numpy(arr).permute(2, 0, 1))


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    rgba[1, 0] = (0, 0, 0, 255)  # opaque black stays black
    rgba[1, 1] = (0, 0, 255, 128)  # half-transparent blue -> light blue
    for source in (Image.fromarray(rgba), rgba, rgba.astype(np.float32) / 255):
        out = PixelPrompt.from_image(source).to_uint8()
        assert out[0, 0].tolist() == [255, 255, 255]
        assert out[0, 1].tolist() == [255, 0, 0]
        assert out[1, 0].tolist() == [0, 0, 0]
        assert out[1, 1, 2] == 255 and 120 <= out[1, 1, 0] <= 135


def test_la_and_palette_transparency_are_composited_on_white() -> None:
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (0, 255))
    assert PixelPrompt.from_image(la).to_uint8().tolist() == [[[255, 255, 255], [0, 0, 0]]]

    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0  # palette index 0 is transparent
    assert PixelPrompt.from_image(p).to_uint8().tolist() == [[[255, 255, 255], [200, 10, 10]]]


def test_grayscale_becomes_rgb() -> None:
    gray = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    for source in (Image.fromarray(gray), gray, gray[:, :, None], torch.from_numpy(gray)[None]):
        pp = PixelPrompt.from_image(source)
        out = pp.to_uint8()
        assert out.shape == (2, 2, 3)
        np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=-1))


def test_resize_happens_only_when_size_differs(monkeypatch) -> None:
    calls = []
    original = Image.Image.resize

    def counting_resize(self, *args, **kwargs):
        calls.append(self.size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", counting_resize)
    img = _rgb_image(20, 30)
    same = PixelPrompt.from_image(img, size=(20, 30))
    assert calls == []
    assert np.array_equal(same.to_uint8(), np.asarray(img))
    resized = PixelPrompt.from_image(img, size=(10, 15))
    assert len(calls) == 1 and resized.size == (10, 15)
    # Float path: one resize per channel, none when the size already matches.
    calls.clear()
    PixelPrompt.from_image(np.asarray(img) / 255.0, size=(20, 30))
    assert calls == []
    out = PixelPrompt.from_image(np.asarray(img) / 255.0, size=(8, 12)).pixels()
    assert out.shape == (3, 8, 12) and out.min() >= 0 and out.max() <= 1


def test_size_is_height_width_and_int_means_square() -> None:
    assert PixelPrompt.from_image(_rgb_image(20, 30), size=(12, 7)).pixels().shape == (3, 12, 7)
    assert PixelPrompt.from_image(_rgb_image(20, 30), size=9).size == (9, 9)
    assert PixelPrompt.from_noise((4, 6)).size == (4, 6)
    assert PixelPrompt.from_color((4, 6)).num_parameters == 3 * 4 * 6


def test_from_color_accepts_tuples_and_names() -> None:
    assert PixelPrompt.from_color(3, "red").to_uint8().reshape(-1, 3).tolist() == [[255, 0, 0]] * 9
    assert np.all(PixelPrompt.from_color((2, 5), (12, 34, 56)).to_uint8() == [12, 34, 56])
    assert torch.equal(PixelPrompt.from_color(2, "#ffffff").pixels(), torch.ones(3, 2, 2))


def test_from_icon_matches_seed_icon() -> None:
    pp = PixelPrompt.from_icon("math", 32)
    np.testing.assert_array_equal(pp.to_uint8(), np.asarray(seed_icon("math", 32)))
    assert PixelPrompt.from_icon("reasoning", (24, 40)).size == (24, 40)


def test_from_noise_is_deterministic_per_seed_and_8bit() -> None:
    a, b, c = PixelPrompt.from_noise(16, seed=7), PixelPrompt.from_noise(16, seed=7), PixelPrompt.from_noise(16, seed=8)
    assert torch.equal(a.pixels(), b.pixels())
    assert not torch.equal(a.pixels(), c.pixels())
    px = a.pixels()
    assert torch.equal(px * 255, torch.round(px * 255))
    assert 0.4 < px.mean() < 0.6 and px.min() >= 0 and px.max() <= 1


# ---------------------------------------------------------------- parameter, gradient, projection


def test_only_parameter_is_float32_raw_even_after_dtype_casts() -> None:
    pp = PixelPrompt.from_noise(8, seed=0)
    before = pp.raw.detach().clone()
    params = list(pp.named_parameters())
    assert [name for name, _ in params] == ["raw"]
    assert params[0][1].dtype == torch.float32 and params[0][1].shape == (3, 8, 8)
    pp.raw.grad = torch.ones_like(pp.raw)
    for cast in (
        lambda m: m.to(torch.bfloat16),
        lambda m: m.half(),
        lambda m: m.double(),
        lambda m: m.to(dtype=torch.float16),
    ):
        cast(pp)
        assert pp.raw.dtype == torch.float32 and pp.raw.grad.dtype == torch.float32
        assert isinstance(pp.raw, nn.Parameter)
        assert torch.equal(pp.raw.detach(), before)  # no lossy round trip through bf16
    assert pp.pixels().dtype == torch.float32


def test_casting_a_parent_module_leaves_raw_float32_but_casts_others() -> None:
    parent = nn.ModuleDict({"art": PixelPrompt.from_noise(4), "head": nn.Linear(2, 2)})
    parent.to(torch.bfloat16)
    assert parent["art"].raw.dtype == torch.float32
    assert parent["head"].weight.dtype == torch.bfloat16


def test_device_moves_still_apply() -> None:
    pp = PixelPrompt.from_noise(4)
    pp.to("meta", torch.bfloat16)
    assert pp.raw.device.type == "meta" and pp.raw.dtype == torch.float32
    if torch.cuda.is_available():  # pragma: no cover - only on GPU machines
        q = PixelPrompt.from_noise(4).to("cuda", torch.bfloat16)
        assert q.raw.is_cuda and q.raw.dtype == torch.float32


def test_pixels_clamp_forward_and_gradient_reaches_every_pixel_including_saturated() -> None:
    pp = PixelPrompt.from_noise(6, seed=2)
    with torch.no_grad():
        pp.raw[0, 0, 0] = 1.7  # saturated high
        pp.raw[1, 2, 3] = -0.4  # saturated low
        pp.raw[2, 5, 5] = 1.0  # exactly at the bound
    px = pp.pixels()
    assert px.dtype == torch.float32 and px.shape == (3, 6, 6)
    assert torch.equal(px, pp.raw.detach().clamp(0, 1))
    weights = torch.randn(px.shape, generator=torch.Generator().manual_seed(0))
    (px * weights).sum().backward()
    assert torch.equal(pp.raw.grad, weights)  # identity backward: no pixel is cut off


def test_saturated_pixel_can_come_back_under_gradient_descent() -> None:
    pp = PixelPrompt.from_color(1, (255, 255, 255))
    opt = torch.optim.SGD(pp.parameters(), lr=0.1)
    for _ in range(3):  # pull towards 0.5 from the white bound
        opt.zero_grad()
        ((pp.pixels() - 0.5) ** 2).sum().backward()
        opt.step()
        pp.project_()
    assert pp.pixels().max() < 1.0


def test_project_keeps_values_in_unit_box_and_leaves_interior_alone() -> None:
    pp = PixelPrompt.from_noise(8, seed=4)
    with torch.no_grad():
        pp.raw.add_(torch.randn(pp.raw.shape, generator=torch.Generator().manual_seed(1)))
    raw = pp.raw.detach().clone()
    assert pp.raw.min() < 0 and pp.raw.max() > 1
    assert pp.project_() is pp
    assert pp.raw.min() >= 0 and pp.raw.max() <= 1
    inside = (raw >= 0) & (raw <= 1)
    assert torch.equal(pp.raw.detach()[inside], raw[inside])
    assert pp.raw.grad is None  # projection is not part of the graph


def test_to_uint8_inverts_k_over_255_and_clamps() -> None:
    k = torch.arange(256, dtype=torch.float32)
    raw = (k / 255).reshape(1, 16, 16).repeat(3, 1, 1)
    pp = PixelPrompt(raw)
    np.testing.assert_array_equal(pp.to_uint8()[..., 0], np.arange(256).reshape(16, 16))
    with torch.no_grad():
        pp.raw[:, 0, 0] = 1.5
        pp.raw[:, 0, 1] = -0.5
        pp.raw[:, 0, 2] = 0.25  # 63.75 -> 64
    out = pp.to_uint8()
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert out[0, 0, 0] == 255 and out[0, 1, 0] == 0 and out[0, 2, 0] == 64
    assert pp.to_pil().mode == "RGB" and pp.to_pil().size == (16, 16)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [[[0, 1], [1, 0]], 42, b"bytes", None])
def test_unknown_input_type_raises_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="unsupported image type"):
        PixelPrompt.from_image(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 5), np.float32), torch.zeros(2, 4, 4), torch.zeros(1, 3, 4, 4)],
)
def test_wrong_channel_count_or_rank_raises(bad) -> None:
    with pytest.raises(ValueError, match="channels|2-D or 3-D"):
        PixelPrompt.from_image(bad)


@pytest.mark.parametrize(
    "bad", [np.full((3, 3, 3), 1.5), np.full((3, 3, 3), -0.1), np.full((3, 3, 3), np.nan), torch.full((3, 3, 3), 2.0)]
)
def test_float_values_outside_unit_range_raise(bad) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]|NaN"):
        PixelPrompt.from_image(bad)


def test_unsupported_dtype_and_colour_raise() -> None:
    with pytest.raises(ValueError, match="dtype"):
        PixelPrompt.from_image(np.zeros((3, 3, 3), np.int64))
    with pytest.raises(ValueError, match="colour"):
        PixelPrompt.from_color(2, "not-a-colour")
    with pytest.raises(ValueError, match="color"):
        PixelPrompt.from_color(2, (300, 0, 0))


@pytest.mark.parametrize("size", [0, -1, (0, 4), (4, -2), (4,), 2.5, "8"])
def test_non_positive_or_malformed_size_raises(size) -> None:
    with pytest.raises(ValueError, match="size"):
        PixelPrompt.from_noise(size)
    with pytest.raises(ValueError, match="size"):
        PixelPrompt.from_image(_rgb_image(), size=size)


def test_constructor_validates_tensor() -> None:
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        PixelPrompt(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PixelPrompt(torch.full((3, 2, 2), 1.1))
