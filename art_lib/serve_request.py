"""What one `/v1/chat/completions` request may ask of `art_lib.serve`, checked in one place before any work.

`chat_request(raw, limits, ...)` is the server's only way from request bytes to work: strict JSON (no
`NaN`/`Infinity`, nesting depth bounded by the parser's recursion limit), then every field through
`FIELDS`, one rule per field: supported fields are type- and range-checked, fields this server does
not implement are accepted only at the value that means "off" (`logprobs: false`, `n: 1`), any other
field is refused. Nothing is silently ignored. A failure is a `RequestError`: an HTTP status and an
OpenAI error object naming the field (`param`).

Images follow evaluation's rule (`art_lib.evaluate.load_image`: 16-bit and float images refused,
transparency over white), with the pixel count and the file size checked before decoding or reading.
Chat templates: only the model's own, unless the operator started the server with
`--trust-request-chat-template` (a request-supplied template runs arbitrary loops in the server, as
vLLM notes for the same flag); `chat_template_kwargs` may only set variables of the template in use.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay out of import time
    from PIL import Image

__all__ = ["RequestError", "ServerLimits", "ChatRequest", "chat_request", "error_payload"]


class RequestError(Exception):
    """A client error: HTTP `status` with an OpenAI error object (`kind` is its type, `param` the field)."""

    def __init__(
        self, message: str, status: int = 400, param: str | None = None, kind: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.kind = status, param, kind


def error_payload(status: int, message: str, kind: str, param: str | None = None) -> dict:
    """OpenAI's error shape (the status as `code`, as vLLM does)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


@dataclass
class ServerLimits:
    """What one request may ask of the server; everything past a limit is refused before work is done."""

    max_body_bytes: int = 16 * 2**20  # request body (and a local image file); from the headers, before reading
    max_images: int = 1  # image parts per request; counted before any is decoded
    max_image_pixels: int = 4096 * 4096  # from the image header, before decoding (Qwen3.5's own maximum)
    max_tokens: int | None = None  # cap on max_tokens; always also capped by the model's context
    max_concurrency: int = 8  # requests reading their body, waiting or generating; the rest get 503 at once
    max_connections: int = 64  # connections being served (headers read, lingering); the rest get 503 at once
    timeout: float = 30.0  # seconds for a request's headers, again for its body, and per write
    backlog: int = 1024  # pending connections the OS queues before refusing new ones
    image_root: str | None = None  # folder whose files may be named as images; None: data URLs only
    trust_request_chat_template: bool = False  # let requests bring their own chat template (runs their code)


@dataclass
class ChatRequest:
    """A validated request: what the engine renders and generates, nothing left to check."""

    messages: list[dict]  # chat-template messages (image parts as {"type": "image"})
    images: list[Image.Image]
    max_tokens: int  # as asked; the engine cuts it to the context and the server's cap
    temperature: float = 1.0  # OpenAI default; 0 means greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict] | None = None
    chat_template: str | None = None  # a request's own template (only when the server trusts them)
    template_kwargs: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- #
# Field rules
# --------------------------------------------------------------------------- #


def _number(lo: float, hi: float, lo_open: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, v: Any) -> float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not (lo < v if lo_open else lo <= v) or v > hi:
            span = f"{'(' if lo_open else '['}{lo}, {hi}]"
            raise RequestError(f"'{name}' must be a number in {span}, got {v!r}", param=name)
        return float(v)

    return check


def _integer(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise RequestError(f"'{name}' must be an integer in [{lo}, {hi}], got {v!r}", param=name)
        return v

    return check


def _only(*allowed: Any) -> Callable[[str, Any], Any]:
    """A field this server does not implement: accepted at the values that ask for nothing."""

    def check(name: str, v: Any) -> Any:
        if isinstance(v, bool) != isinstance(allowed[0], bool) or v not in allowed:
            raise RequestError(f"'{name}' = {v!r} is not supported by this server (only {allowed[0]!r})", param=name)
        return v

    return check


def _stop(name: str, v: Any) -> list[str]:
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not 1 <= len(stops) <= 4 or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(f"'{name}' must be a non-empty string or a list of 1 to 4 of them, got {v!r}", param=name)
    return stops


def _typed(kind: type, what: str) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, kind) or (kind is list and not all(isinstance(x, dict) for x in v)):
            raise RequestError(f"'{name}' must be {what}, got {type(v).__name__}", param=name)
        return v

    return check


# Every field a request may carry (None counts as absent). Anything else is refused by name.
FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "messages": _typed(list, "a list of messages"),
    "model": _typed(str, "a string"),
    "max_tokens": _integer(1, 2**63 - 1),
    "max_completion_tokens": _integer(1, 2**63 - 1),
    "temperature": _number(0.0, 2.0),
    "top_p": _number(0.0, 1.0, lo_open=True),
    "seed": _integer(-(2**63), 2**64 - 1),  # torch.manual_seed's range
    "stop": _stop,
    "tools": _typed(list, "a list of tool objects"),
    "tool_choice": _only("auto"),
    "chat_template_kwargs": _typed(dict, "an object"),
    "chat_template": _typed(str, "a string"),
    "user": _typed(str, "a string"),  # the caller's end-user id; no effect on the answer
    "n": _only(1),
    "stream": _only(False),
    "logprobs": _only(False),
    "top_logprobs": _only(0),
    "presence_penalty": _only(0),
    "frequency_penalty": _only(0),
}


def parse_json(raw: bytes) -> dict:
    """Request bytes -> a JSON object; `NaN`/`Infinity`, bad UTF-8 and runaway nesting are client errors."""

    def no_constant(name: str):
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(raw.decode("utf-8") or "{}", parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        what = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise RequestError(f"the request body is not valid JSON: {what}"[:300]) from None
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def chat_request(raw: bytes, limits: ServerLimits, served_name: str, processor) -> ChatRequest:
    """Request body bytes -> a `ChatRequest`, or a `RequestError` naming the first field at fault.

    `processor` is the served model's: its chat template is the one whose variables `chat_template_kwargs` may
    set, and images are checked as evaluation checks them with it.
    """
    body = parse_json(raw)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise RequestError(
            f"unsupported request field {unknown[0]!r}; this server accepts {', '.join(FIELDS)}", param=unknown[0]
        )
    v = {name: FIELDS[name](name, value) for name, value in body.items() if value is not None}
    if v.get("model", served_name) != served_name:
        raise RequestError(
            f"the model {v['model']!r} does not exist; this server serves {served_name!r}",
            status=404,
            param="model",
            kind="not_found_error",
        )
    template = _request_template(v, limits)
    messages, images = _template_messages(body.get("messages"), limits, processor)
    return ChatRequest(
        messages=messages,
        images=images,
        max_tokens=v.get("max_completion_tokens", v.get("max_tokens", 512)),
        temperature=v.get("temperature", 1.0),
        top_p=v.get("top_p", 1.0),
        seed=v.get("seed"),
        stop=v.get("stop", []),
        tools=v.get("tools") or None,
        chat_template=template,
        template_kwargs=_template_kwargs(v.get("chat_template_kwargs", {}), template or processor.chat_template),
    )


def _request_template(v: dict, limits: ServerLimits) -> str | None:
    """The request's own chat template (top level or in `chat_template_kwargs`), if the server trusts them."""
    kwargs = v.get("chat_template_kwargs", {})
    if "chat_template" in kwargs and not isinstance(kwargs["chat_template"], str):
        raise RequestError("'chat_template_kwargs.chat_template' must be a string", param="chat_template_kwargs")
    template = v.get("chat_template", kwargs.get("chat_template"))
    if template is not None and not limits.trust_request_chat_template:
        raise RequestError(
            "request-supplied chat templates are refused: a template is code run by the server; start it with "
            "--trust-request-chat-template to allow them",
            param="chat_template" if "chat_template" in v else "chat_template_kwargs",
        )
    return template


# apply_chat_template's own arguments and what the server or HF sets: not for a request to override.
_RESERVED = {
    "conversation", "messages", "chat_template", "tools", "documents", "add_generation_prompt",
    "continue_final_message", "tokenize", "padding", "truncation", "max_length", "return_tensors",
    "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs", "processor_kwargs", "template_kwargs",
    "load_audio_from_video", "sanitize_control_tokens", "raise_exception", "strftime_now",
}  # fmt: skip


@functools.lru_cache(maxsize=8)
def _template_variables(template: str) -> frozenset[str]:
    from jinja2 import Environment, TemplateSyntaxError, meta

    try:
        return frozenset(meta.find_undeclared_variables(Environment().parse(template)))
    except TemplateSyntaxError as err:
        raise RequestError(f"the chat template does not parse: {err}", param="chat_template") from None


def _template_kwargs(kwargs: dict, template: str) -> dict:
    """`chat_template_kwargs` restricted to what they are for: variables of the template in use."""
    variables = _template_variables(template) - _RESERVED
    for key in kwargs:
        if key == "chat_template":
            continue  # the request's template itself (`_request_template`)
        if key in _RESERVED or key not in variables:
            raise RequestError(
                f"'chat_template_kwargs' key {key!r} is not a variable of the chat template "
                f"(it may set: {', '.join(sorted(variables)) or 'nothing'})",
                param="chat_template_kwargs",
            )
    return {k: value for k, value in kwargs.items() if k != "chat_template"}


# --------------------------------------------------------------------------- #
# Messages and images
# --------------------------------------------------------------------------- #


def _image_urls(messages: list) -> list[str]:
    """The image URLs of a request, in order, without decoding any (so their number is checked first)."""
    urls = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str):
                    raise RequestError("image_url part without a url", param="messages")
                urls.append(url)
    return urls


def _template_messages(messages: list | None, limits: ServerLimits, processor) -> tuple[list[dict], list[Image.Image]]:
    """OpenAI messages -> chat-template messages (image parts as `{"type": "image"}`) and the images."""
    if not messages:
        raise RequestError("'messages' must be a non-empty list", param="messages")
    urls = _image_urls(messages)
    if len(urls) > limits.max_images:
        raise RequestError(
            f"at most {limits.max_images} image(s) per request are supported, got {len(urls)}", param="messages"
        )
    images = [_decode_image_url(u, limits, processor) for u in urls]
    return [_template_message(m, i) for i, m in enumerate(messages)], images


def _template_message(m: Any, i: int) -> dict:
    if not isinstance(m, dict) or not isinstance(m.get("role"), str):
        raise RequestError(f"messages[{i}] is not a message with a 'role': {str(m)[:200]}", param="messages")
    m = dict(m)
    content = m.get("content")
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text", ""), str):
                parts.append({"type": "text", "text": part.get("text", "")})
            elif kind == "image_url":
                parts.append({"type": "image"})
            else:
                raise RequestError(f"messages[{i}]: unsupported content part {str(part)[:100]}", param="messages")
        m["content"] = parts
    elif content is not None and not isinstance(content, str):
        raise RequestError(f"messages[{i}].content must be a string or a list of parts", param="messages")
    calls = m.get("tool_calls") or []
    for call in calls if isinstance(calls, list) else [None]:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise RequestError(f"messages[{i}].tool_calls must be a list of function calls", param="messages")
        if isinstance(fn.get("arguments"), str):
            # The chat template iterates the arguments mapping; the wire carries a JSON string.
            try:
                fn["arguments"] = parse_json(fn["arguments"].encode()) if fn["arguments"].strip() else {}
            except RequestError as err:
                raise RequestError(f"messages[{i}]: tool call arguments: {err}", param="messages") from None
    return m


def _decode_image_url(url: str, limits: ServerLimits, processor) -> Image.Image:
    """A base64 `data:image/...` URL (or, when allowed, a file under `image_root`) -> RGB PIL image.

    The pixel count and bit depth are read from the header and checked before the pixels are
    decoded; the rule is evaluation's (`load_image`). A refused path gets one message whatever the
    reason, so errors do not reveal which files exist.
    """
    from PIL import Image

    from art_lib.evaluate import load_image

    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise RequestError("image data URLs must be base64-encoded", param="messages")
        try:
            source = io.BytesIO(base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError) as err:
            raise RequestError(f"invalid base64 image data: {err}", param="messages") from err
    elif limits.image_root is not None and "://" not in url:
        source = _local_image(url, limits.image_root, limits.max_body_bytes)
    else:
        # No network or file:// fetches: reading what the server can read is not the client's right.
        raise RequestError(
            "only data: URLs are accepted for images"
            + ("" if limits.image_root is None else " (or paths under the server's image folder)"),
            param="messages",
        )
    try:
        with Image.open(source, formats=("PNG", "JPEG", "WEBP", "GIF")) as img:
            w, h = img.size
            if w * h > limits.max_image_pixels:
                raise RequestError(
                    f"image of {h}x{w} pixels is larger than this server's limit of {limits.max_image_pixels} pixels",
                    param="messages",
                )
            # Evaluation's rule (size left to the processor, as any engine would): 8-bit only, RGB over white.
            return load_image(img, processor, allow_resize=True).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise RequestError(f"image refused: {err}", param="messages") from err


def _local_image(path: str, root: str, max_bytes: int) -> io.BytesIO:
    """Bytes of a regular file under `root` (symlinks resolved), its size checked before it is read."""
    refused = RequestError("image path refused: not a readable file under the server's image folder", param="messages")
    try:
        real = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([real, os.path.realpath(root)]) != os.path.realpath(root):
            raise refused
        # O_NONBLOCK: opening a FIFO must not wait for a writer; then only regular files are read.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        raise refused from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refused
        too_big = RequestError(
            f"image file {path!r} is larger than this server's limit of {max_bytes} bytes", param="messages"
        )
        if info.st_size > max_bytes:
            raise too_big
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)  # bounded: the file may have grown since fstat
        if len(data) > max_bytes:
            raise too_big
        return io.BytesIO(data)
    finally:
        os.close(fd)
