"""Tests of art_lib.preprocess: bit-exact parity with the official Qwen2-VL image processors, gradients, errors."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from art_lib.preprocess import nearest_valid_sizes, num_visual_tokens, patch_geometry, preprocess_image, valid_size

QWEN3_5_DIR = Path(__file__).parent / "data" / "qwen3_5_0.8B"  # byte copy of Qwen3.5-0.8B's preprocessor_config.json

TORCHVISION_MISSING = (
    "torchvision cannot be installed for the CPU torch build of this environment; "
    "the torchvision backend is tested wherever torchvision is installed"
)
BACKENDS = ["pil", "torchvision"]

# Processor settings of the other model families that reuse Qwen2VLImageProcessor(Pil) (their preprocessor_config.json).
FAMILIES = {
    # Qwen2-VL and Qwen2.5-VL: 14 px patches, OpenAI CLIP mean/std, factor 28.
    "qwen2_vl": dict(
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        min_pixels=3136,
        max_pixels=12845056,
    ),
    # Qwen3-VL: 16 px patches, mean/std 0.5, factor 32.
    "qwen3_vl": dict(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": 65536, "longest_edge": 16777216},
    ),
}
SIZES = {  # (H, W), square and not, 256..1024, valid for the family's factor
    "qwen3_5": [(256, 256), (320, 256), (512, 384), (448, 640), (1024, 1024)],
    "qwen3_vl": [(256, 256), (320, 256), (512, 384), (448, 640), (1024, 1024)],
    "qwen2_vl": [(252, 252), (280, 252), (504, 392), (448, 644), (1008, 1008)],
}


def _processor_class(backend: str):
    """Qwen2VLImageProcessorPil or, where torchvision is installed, the torchvision-backed Qwen2VLImageProcessor."""
    if backend == "pil":
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil
    pytest.importorskip("torchvision", reason=TORCHVISION_MISSING)
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor


def _processor(family: str, backend: str = "pil", **overrides):
    """The official image processor of `family` on `backend`."""
    if family == "qwen3_5":
        if backend != "pil":
            pytest.importorskip("torchvision", reason=TORCHVISION_MISSING)
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(str(QWEN3_5_DIR), backend=backend)
    else:
        proc = _processor_class(backend)(**{**FAMILIES[family], **overrides})
    assert proc.backend == backend  # AutoImageProcessor falls back silently to the other backend
    return proc


def _as_pixels(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 k / 255 (float32 division: bit-identical to the processor's rescale)."""
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255


def _assert_same(ours: dict, official, context: str) -> None:
    assert ours["pixel_values"].dtype == torch.float32
    assert ours["image_grid_thw"].dtype == torch.long and ours["image_grid_thw"].shape == (1, 3)
    assert ours["pixel_values"].shape == official["pixel_values"].shape, context
    diff = (ours["pixel_values"] - official["pixel_values"].to(torch.float32)).abs().max().item()
    assert diff == 0.0, f"{context}: max abs diff {diff}"
    assert torch.equal(ours["image_grid_thw"], official["image_grid_thw"]), context


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", ["qwen3_5", "qwen3_vl", "qwen2_vl"])
def test_preprocess_matches_processor_exactly(family, backend):
    proc = _processor(family, backend)
    rng = np.random.default_rng(0)
    for h, w in SIZES[family]:
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours = preprocess_image(_as_pixels(arr), proc)
        _assert_same(ours, proc(images=arr, return_tensors="pt"), f"{family} {backend} {h}x{w} numpy")
        _assert_same(ours, proc(images=Image.fromarray(arr), return_tensors="pt"), f"{family} {backend} {h}x{w} PIL")
    # float64 k / 255 rounds to the same float32 values, so it is exact too.
    ours64 = preprocess_image(torch.from_numpy(arr).permute(2, 0, 1).double() / 255, proc)
    _assert_same(ours64, proc(images=arr, return_tensors="pt"), f"{family} {backend} float64 input")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "overrides",
    [dict(rescale_factor=1 / 127.5), dict(do_rescale=False), dict(do_normalize=False)],
    ids=["rescale_1_over_127.5", "no_rescale", "no_normalize"],
)
def test_preprocess_matches_processor_with_other_rescale_and_normalise_settings(overrides, backend):
    proc = _processor("qwen2_vl", backend, **overrides)
    rng = np.random.default_rng(1)
    for h, w in [(56, 56), (112, 84)]:
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        _assert_same(preprocess_image(_as_pixels(arr), proc), proc(images=arr, return_tensors="pt"), f"{overrides}")


def test_k_over_255_in_float32_is_what_both_processors_compute():
    # Why inputs must be built as `uint8.float() / 255` (or `.double() / 255`): for every k the float32 quotient
    # equals the PIL backend's float32(float64(k) * (1/255)), and times 255 gives k back exactly (the torchvision
    # backend works from float32(k)). Multiplying by float32(1/255) instead is off by one ulp for about half the k.
    k = torch.arange(256, dtype=torch.uint8)
    pil_rescale = torch.from_numpy((np.arange(256).astype(np.float64) * (1 / 255)).astype(np.float32))
    assert torch.equal(k.float() / 255, pil_rescale)
    assert torch.equal((k.double() / 255).float(), pil_rescale)
    assert torch.equal((k.float() / 255) * 255, k.float())
    assert not torch.equal(k.float() * (1 / 255), pil_rescale)


@pytest.mark.parametrize("family", ["qwen3_5", "qwen2_vl"])
def test_every_pixel_gets_a_nonzero_gradient(family):
    proc = _processor(family)
    h, w = SIZES[family][1]
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(3, h, w, generator=g).requires_grad_()
    out = preprocess_image(pixels, proc)
    assert out["pixel_values"].requires_grad
    projection = torch.randn(out["pixel_values"].shape, generator=g)
    (out["pixel_values"] * projection).sum().backward()
    assert pixels.grad is not None and pixels.grad.shape == pixels.shape
    assert torch.isfinite(pixels.grad).all()
    assert (pixels.grad != 0).all(), f"{int((pixels.grad == 0).sum())} pixels got a zero gradient"


@pytest.mark.parametrize(
    "family, h, w, nearest",
    [
        ("qwen3_5", 256, 250, "256x256"),  # a side off the factor
        ("qwen3_5", 128, 128, "256x256"),  # area under shortest_edge (min_pixels)
        ("qwen2_vl", 250, 250, "252x252"),  # factor 28
    ],
)
def test_wrong_size_raises_naming_nearest_valid_sizes(family, h, w, nearest):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    proc = _processor(family)
    geo = patch_geometry(proc)
    # The official processor really would resample this size.
    assert smart_resize(h, w, geo["factor"], geo["min_pixels"], geo["max_pixels"]) != (h, w)
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    assert proc(images=arr, return_tensors="pt")["pixel_values"].shape[0] * geo["patch_size"] ** 2 != h * w
    with pytest.raises(ValueError, match=f"{h}x{w} is not a valid size") as err:
        preprocess_image(_as_pixels(arr), proc)
    message = str(err.value)
    assert f"nearest valid sizes: {nearest}" in message
    assert f"multiples of {geo['factor']}" in message
    suggested = nearest_valid_sizes(h, w, proc)
    assert suggested and suggested[0] == tuple(int(s) for s in nearest.split("x"))
    for sh, sw in suggested:
        assert valid_size(sh, sw, proc)
        assert f"{sh}x{sw}" in message


def test_valid_size_agrees_with_smart_resize():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    for family in ["qwen3_5", "qwen2_vl"]:
        proc = _processor(family)
        geo = patch_geometry(proc)
        sizes = [(h, w) for h in range(14, 1200, 41) for w in range(14, 1200, 53)] + [(4096, 4096), (4200, 4100)]
        for h, w in sizes:
            kept = smart_resize(h, w, geo["factor"], geo["min_pixels"], geo["max_pixels"]) == (h, w)
            assert valid_size(h, w, proc) == kept, (family, h, w)
            for sh, sw in nearest_valid_sizes(h, w, proc):
                assert smart_resize(sh, sw, geo["factor"], geo["min_pixels"], geo["max_pixels"]) == (sh, sw)
        assert nearest_valid_sizes(4200, 4100, proc), family  # over max_pixels still finds sizes


@pytest.mark.parametrize(
    "shape",
    [(4, 256, 256), (1, 256, 256), (256, 256, 3), (1, 3, 256, 256), (256, 256)],
    ids=["rgba", "gray", "hwc", "batched", "2d"],
)
def test_wrong_shape_raises(shape):
    with pytest.raises(ValueError, match=r"expected pixels of shape \(3, H, W\)"):
        preprocess_image(torch.rand(shape), _processor("qwen3_5"))


@pytest.mark.parametrize("bad, found", [(1.5, "max 1.5"), (-0.25, "min -0.25")])
def test_values_outside_unit_range_raise(bad, found):
    pixels = torch.rand(3, 256, 256)
    pixels[1, 7, 9] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]") as err:
        preprocess_image(pixels, _processor("qwen3_5"))
    assert found in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_raise(bad):
    pixels = torch.rand(3, 256, 256)
    pixels[0, 0, 0] = bad
    with pytest.raises(ValueError, match="finite"):
        preprocess_image(pixels, _processor("qwen3_5"))


def test_uint8_pixels_raise():
    with pytest.raises(ValueError, match="float tensor"):
        preprocess_image(torch.zeros(3, 256, 256, dtype=torch.uint8), _processor("qwen3_5"))


def test_patch_geometry_is_read_from_the_processor():
    geo = patch_geometry(_processor("qwen3_5"))
    assert (geo["patch_size"], geo["merge_size"], geo["temporal_patch_size"], geo["factor"]) == (16, 2, 2, 32)
    assert (geo["min_pixels"], geo["max_pixels"]) == (65536, 16777216)
    assert geo["mean"] == geo["std"] == (0.5, 0.5, 0.5)
    geo2 = patch_geometry(_processor("qwen2_vl", max_pixels=1_000_000))
    assert (geo2["patch_size"], geo2["factor"], geo2["min_pixels"], geo2["max_pixels"]) == (14, 28, 3136, 1_000_000)
    assert geo2["mean"] == pytest.approx(FAMILIES["qwen2_vl"]["image_mean"])
    # A full multimodal processor is accepted too: its .image_processor is used.
    assert patch_geometry(types.SimpleNamespace(image_processor=_processor("qwen2_vl"))) == patch_geometry(
        _processor("qwen2_vl")
    )


@pytest.mark.parametrize("family", ["qwen3_5", "qwen2_vl"])
def test_num_visual_tokens_is_patches_over_merge_squared(family):
    proc = _processor(family)
    merge = patch_geometry(proc)["merge_size"]
    for h, w in SIZES[family]:
        tokens = num_visual_tokens(h, w, proc)
        assert tokens == proc.get_number_of_image_patches(h, w) // merge**2
        thw = preprocess_image(torch.zeros(3, h, w), proc)["image_grid_thw"]
        assert tokens == int(thw.prod()) // merge**2
    assert num_visual_tokens(256, 256, _processor("qwen3_5")) == 64
    with pytest.raises(ValueError, match="nearest valid sizes"):
        num_visual_tokens(256, 250, _processor("qwen3_5"))
