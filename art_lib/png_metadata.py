"""The text metadata of an artwork PNG: written by `PixelPrompt.save_png`, read and checked here.

A PNG may come from anyone, so reading one is a boundary: `open_png` refuses what is not a still
PNG (another format, an animation whose first frame would be taken silently) and `png_metadata`
refuses text that does not parse as the kit writes it (JSON keys that are not a list of names, a
value that is not JSON, nested too deeply or too long, an `image_size` that is not the image's),
each with a ValueError naming the file and the key. Writing refuses what reading would refuse.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from PIL import Image, PngImagePlugin
from PIL.PngImagePlugin import PngInfo

# Text-chunk keys written by save_png; user metadata may not override them.
VERSION_KEY = "art_lib_version"
SIZE_KEY = "image_size"
JSON_KEYS_KEY = "art_lib_json_keys"  # which other keys hold JSON rather than plain str
_RESERVED_KEYS = frozenset({VERSION_KEY, SIZE_KEY, JSON_KEYS_KEY})
_ZIP_THRESHOLD = 1024  # compress text values longer than this (zTXt / compressed iTXt)
# PIL reads no compressed text value longer than this (1 MiB); no value may be longer, compressed or not.
MAX_TEXT_BYTES = PngImagePlugin.MAX_TEXT_CHUNK


def encode_metadata(metadata: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """User metadata -> (text values, keys that were JSON-encoded); str values stay as-is."""
    text: dict[str, str] = {}
    json_keys: list[str] = []
    for key, value in metadata.items():
        if key in _RESERVED_KEYS:
            raise ValueError(f"metadata key {key!r} is reserved by art_lib")
        try:
            key.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"metadata key {key!r} must be latin-1 text (a PNG keyword)") from None
        if not 1 <= len(key) <= 79 or key != key.strip():
            raise ValueError(f"metadata key {key!r} must be 1-79 chars without surrounding spaces (a PNG keyword)")
        if not isinstance(value, str):
            try:
                value = json.dumps(value, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise ValueError(f"metadata value for {key!r} is not JSON-serialisable: {err}") from err
            json_keys.append(key)
        if len(value.encode()) > MAX_TEXT_BYTES:
            raise ValueError(f"metadata value for {key!r} is longer than {MAX_TEXT_BYTES} bytes, more than a PNG reads")
        text[key] = value
    return text, json_keys


def png_info(metadata: dict[str, Any], size: tuple[int, int]) -> PngInfo:
    """The text chunks of an artwork of `size` (H, W): version, size, JSON keys, then the user's metadata."""
    from art_lib import __version__

    text, json_keys = encode_metadata(metadata)
    header = {VERSION_KEY: __version__, SIZE_KEY: f"{size[0]}x{size[1]}"}
    if json_keys:
        header[JSON_KEYS_KEY] = json.dumps(json_keys)
    info = PngInfo()
    for key, value in {**header, **text}.items():
        info.add_text(key, value, zip=len(value) > _ZIP_THRESHOLD)
    return info


def _loads(name: str, key: str, value: str) -> Any:
    """One JSON text value, or a ValueError naming the file and the key."""
    if len(value) > MAX_TEXT_BYTES:
        raise ValueError(f"{name!r}: metadata {key!r} is longer than {MAX_TEXT_BYTES} characters")
    try:
        return json.loads(value)
    except RecursionError:
        raise ValueError(f"{name!r}: metadata {key!r} is JSON nested too deeply to read") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{name!r}: metadata {key!r} is not valid JSON ({err})") from None


def decode_metadata(text: dict[str, str], name: str) -> dict[str, Any]:
    """PNG text chunks of file `name` -> metadata dict, decoding the keys listed under JSON_KEYS_KEY."""
    out: dict[str, Any] = dict(text)
    raw_keys = out.pop(JSON_KEYS_KEY, None)
    if raw_keys is None:
        return out
    json_keys = _loads(name, JSON_KEYS_KEY, raw_keys)
    if not isinstance(json_keys, list) or not all(isinstance(k, str) for k in json_keys):
        raise ValueError(
            f"{name!r}: metadata {JSON_KEYS_KEY!r} must be a JSON list of key names, got {type(json_keys).__name__} "
            f"{raw_keys!r:.80}"
        )
    for key in json_keys:
        if key in out:
            out[key] = _loads(name, key, out[key])
    return out


def open_png(path: str | os.PathLike) -> Image.Image:
    """`Image.open` for an artwork: a still PNG, else ValueError (PIL's text limits named with the file)."""
    name = os.fspath(path)
    try:
        img = Image.open(path)
    except ValueError as err:  # PIL's bounds on text chunks before the pixels (MAX_TEXT_CHUNK, MAX_TEXT_MEMORY)
        raise ValueError(f"{name!r}: its text metadata cannot be read ({err})") from err
    try:
        if img.format != "PNG":
            raise ValueError(f"{name!r} is not a PNG file (format {img.format!r})")
        check_still(img, name)
    except ValueError:
        img.close()
        raise
    return img


def check_still(img: Image.Image, name: str) -> None:
    """An animated image (APNG, GIF, ...) is refused: loading it would silently take its first frame."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        raise ValueError(
            f"{name!r} is an animated {img.format} ({frames} frames); an artwork is one still image: "
            "save one frame as a PNG"
        )


def png_metadata(img: Image.Image, path: str | os.PathLike) -> dict[str, Any]:
    """The checked metadata of an image from `open_png` (this loads it: text may follow the pixels)."""
    name = os.fspath(path)
    try:
        text = {str(k): str(v) for k, v in (getattr(img, "text", None) or {}).items()}
    except ValueError as err:  # PIL's bounds on text chunks after the pixels
        raise ValueError(f"{name!r}: its text metadata cannot be read ({err})") from err
    metadata = decode_metadata(text, name)
    size = metadata.get(SIZE_KEY)
    if size is not None and size != f"{img.height}x{img.width}":
        said = size if isinstance(size, str) and re.fullmatch(r"[0-9]{1,9}x[0-9]{1,9}", size) else f"{size!r:.40}"
        raise ValueError(f"{name!r}: metadata {SIZE_KEY!r} says {said} but the image is {img.height}x{img.width}")
    return metadata


def read_png_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the text metadata of a PNG file, JSON values decoded (empty dict if none)."""
    with open_png(path) as img:
        return png_metadata(img, path)
