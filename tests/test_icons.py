"""Tests for art_lib.icons: seed icons drawn with PIL."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from art_lib.icons import ICON_NAMES, seed_icon


def test_icon_names_cover_the_seed_tasks() -> None:
    assert {"math", "reasoning", "tools"} <= set(ICON_NAMES)


@pytest.mark.parametrize("name", ICON_NAMES)
def test_icon_is_deterministic_byte_for_byte(name: str) -> None:
    assert seed_icon(name, 128).tobytes() == seed_icon(name, 128).tobytes()


@pytest.mark.parametrize("name", ICON_NAMES)
@pytest.mark.parametrize("size", [64, 256, 512])
def test_icon_is_rgb_of_requested_size(name: str, size: int) -> None:
    img = seed_icon(name, size)
    assert img.mode == "RGB"
    assert img.size == (size, size)


@pytest.mark.parametrize("name", ICON_NAMES)
def test_icon_has_light_background_and_substantial_drawing(name: str) -> None:
    arr = np.asarray(seed_icon(name, 128)).astype(np.int16)
    # Corners are background: pure white.
    for corner in (arr[0, 0], arr[0, -1], arr[-1, 0], arr[-1, -1]):
        assert (corner == 255).all()
    # The drawing covers a meaningful part of the canvas (not a blank or a speck).
    drawn = (np.abs(arr - 255).sum(axis=-1) > 30).mean()
    assert 0.1 < drawn < 0.9


@pytest.mark.parametrize("a, b", list(itertools.combinations(ICON_NAMES, 2)))
def test_icons_are_distinct_from_each_other(a: str, b: str) -> None:
    x = np.asarray(seed_icon(a, 128)).astype(np.float32)
    y = np.asarray(seed_icon(b, 128)).astype(np.float32)
    assert np.abs(x - y).mean() > 20.0


@pytest.mark.parametrize("a, b", list(itertools.combinations(ICON_NAMES, 2)))
def test_icons_have_distinct_dominant_colours(a: str, b: str) -> None:
    def mean_ink(name: str) -> np.ndarray:
        arr = np.asarray(seed_icon(name, 128)).astype(np.float32)
        ink = np.abs(arr - 255).sum(axis=-1) > 30
        return arr[ink].mean(axis=0)

    assert np.abs(mean_ink(a) - mean_ink(b)).max() > 40.0


def test_unknown_icon_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        seed_icon("poetry")
    for name in ICON_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_invalid_size_is_rejected(size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        seed_icon("math", size)  # type: ignore[arg-type]
