"""A minimal OpenAI-compatible server for a checkpoint: `python -m art_lib.serve --model PATH --port N`.

It runs the checkpoint with HF `generate` (standard-library `http.server`). It exists because
`transformers serve` loads processors with `AutoProcessor`, which needs torchvision for Qwen3.5's video
processor; this server uses `art_lib.models.load_processor`, which does not. It decodes the data-URL
image with PIL, renders the chat template and generates exactly as `art_lib.evaluate.evaluate` does,
so its greedy answers equal the in-process ones; `art_lib.client` queries it.

Every request is validated before work is done (`ServerLimits`: body size, image count and pixels
from the header, `max_tokens` cut to the context or `--max-tokens`); images are data URLs only unless
`--allow-local-images DIR`; sockets time out; generation stops when the client disconnects; past
`--max-concurrency` requests are answered 503 at once.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay out of import time
    from PIL import Image

__all__ = ["make_server", "ServerLimits", "main"]


class _BadRequest(Exception):
    """A client error, answered with HTTP 400 (or `status`)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServerLimits:
    """What one request may ask of the server; everything past a limit is refused before work is done."""

    max_body_bytes: int = 16 * 2**20  # request body; checked from Content-Length before reading
    max_images: int = 1  # image parts per request; counted before any is decoded
    max_image_pixels: int = 4096 * 4096  # from the image header, before decoding (Qwen3.5's own maximum)
    max_tokens: int | None = None  # cap on max_tokens; always also capped by the model's context
    max_concurrency: int = 8  # requests waiting or generating; the rest get 503 at once
    timeout: float = 30.0  # seconds a socket may stall while a request is read or an answer written
    backlog: int = 1024  # pending connections the OS queues before refusing new ones
    image_root: str | None = None  # folder whose files may be named as images; None: data URLs only


def _decode_image_url(url: str, limits: ServerLimits) -> Image.Image:
    """A base64 `data:image/...` URL (or, when allowed, a file under `image_root`) -> PIL image.

    The pixel count is read from the header and checked before the pixels are decoded. A refused
    path gets one message whatever the reason, so errors do not reveal which files exist.
    """
    from PIL import Image

    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise _BadRequest("image data URLs must be base64-encoded")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as err:
            raise _BadRequest(f"invalid base64 image data: {err}") from err
        source: Any = io.BytesIO(raw)
    elif limits.image_root is not None and "://" not in url:
        source = _local_image(url, limits.image_root)
    else:
        # No network or file:// fetches: reading what the server can read is not the client's right.
        raise _BadRequest(
            "only data: URLs are accepted for images"
            + ("" if limits.image_root is None else " (or paths under the server's image folder)")
        )
    try:
        with Image.open(source, formats=("PNG", "JPEG", "WEBP", "GIF")) as img:
            w, h = img.size
            if w * h > limits.max_image_pixels:
                raise _BadRequest(
                    f"image of {h}x{w} pixels is larger than this server's limit of {limits.max_image_pixels} pixels"
                )
            img.load()
            return img.copy()
    except _BadRequest:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise _BadRequest(f"cannot decode image: {err}") from err
    finally:
        if hasattr(source, "close"):
            source.close()


def _local_image(path: str, root: str) -> io.BytesIO:
    """Bytes of a regular file under `root` (symlinks resolved); any failure gives the same error."""
    import stat

    refused = _BadRequest("image path refused: not a readable file under the server's image folder")
    try:
        real = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([real, os.path.realpath(root)]) != os.path.realpath(root):
            raise refused
        # O_NONBLOCK: opening a FIFO must not wait for a writer; then only regular files are read.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        raise refused from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise refused
        with os.fdopen(fd, "rb", closefd=False) as f:
            return io.BytesIO(f.read())
    finally:
        os.close(fd)


def _image_urls(messages: Any) -> list[str]:
    """The image URLs of a request, in order, without decoding any (so their number is checked first)."""
    urls = []
    for m in messages if isinstance(messages, list) else []:
        content = m.get("content") if isinstance(m, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str):
                    raise _BadRequest("image_url part without a url")
                urls.append(url)
    return urls


def _template_messages(messages: Any, limits: ServerLimits) -> tuple[list[dict], list[Image.Image]]:
    """OpenAI messages -> chat-template messages (image parts as `{"type": "image"}`) and the images."""
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty list")
    urls = _image_urls(messages)
    if len(urls) > limits.max_images:
        raise _BadRequest(f"at most {limits.max_images} image(s) per request are supported, got {len(urls)}")
    images = [_decode_image_url(u, limits) for u in urls]
    out = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise _BadRequest(f"invalid message: {str(m)[:200]}")
        m = dict(m)
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": part.get("text", "")})
                elif kind == "image_url":
                    parts.append({"type": "image"})
                else:
                    raise _BadRequest(f"unsupported content part type {kind!r}")
            m["content"] = parts
        for call in m.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                # The chat template iterates the arguments mapping; the wire carries a JSON string.
                try:
                    fn["arguments"] = json.loads(fn["arguments"]) if fn["arguments"].strip() else {}
                except ValueError as err:
                    raise _BadRequest(f"tool call arguments are not JSON: {err}") from err
        out.append(m)
    return out, images


def _positive_int(body: dict, *keys: str, default: int) -> int:
    for key in keys:
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _BadRequest(f"'{key}' must be a positive integer, got {value!r}")
            return value
    return default


def _client_gone(sock) -> bool:
    """True when the peer has closed the connection (readable with nothing to read)."""
    import select
    import socket

    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


class _Engine:
    """The loaded model + processor behind the server; one generation at a time."""

    def __init__(self, model, processor, name: str, limits: ServerLimits | None = None) -> None:
        self.model, self.processor, self.name = model, processor, name
        self.limits = limits or ServerLimits()
        self.lock = threading.Lock()
        config = getattr(model.config, "text_config", model.config)
        self.context = int(getattr(config, "max_position_embeddings", None) or 2**31)

    def chat_completion(self, body: dict, cancelled=None) -> dict:
        """Answer one `/v1/chat/completions` request body; `cancelled()` stops generation early."""
        import torch

        from art_lib.evaluate import generate_completions

        if body.get("stream"):
            raise _BadRequest("streaming is not supported by this server")
        if _positive_int(body, "n", default=1) != 1:
            raise _BadRequest("only n=1 is supported")
        requested = _positive_int(body, "max_completion_tokens", "max_tokens", default=512)
        messages, images = _template_messages(body.get("messages"), self.limits)
        template_kwargs = body.get("chat_template_kwargs") or {}
        if not isinstance(template_kwargs, dict):
            raise _BadRequest("'chat_template_kwargs' must be an object")
        try:
            text = self.processor.apply_chat_template(
                messages, tools=body.get("tools") or None, add_generation_prompt=True, tokenize=False, **template_kwargs
            )
        except Exception as err:  # noqa: BLE001 - template errors are the request's fault
            raise _BadRequest(f"chat template failed: {err}") from err
        prompt_tokens = len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        if images:  # the single <|image_pad|> expands to the image's visual tokens
            from art_lib.evaluate import visual_token_count

            prompt_tokens += visual_token_count(self.processor, images[0]) - 1
        room = self.context - prompt_tokens
        if room < 1:
            raise _BadRequest(
                f"the prompt has {prompt_tokens} tokens: it does not fit the model's context of {self.context}"
            )
        # Like vLLM's default, a budget past the context is cut to what fits (and a configured cap).
        max_tokens = min(requested, room, self.limits.max_tokens or room)
        # OpenAI semantics: temperature defaults to 1; 0 means greedy decoding.
        temperature = float(body["temperature"]) if body.get("temperature") is not None else 1.0
        top_p = float(body["top_p"]) if body.get("top_p") is not None else 1.0
        seed = body.get("seed")
        with self.lock:
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(int(seed))
                out = generate_completions(
                    self.model,
                    self.processor,
                    [text],
                    images[0] if images else None,
                    max_new_tokens=max_tokens,
                    greedy=temperature == 0.0,
                    temperature=temperature,
                    top_p=top_p,
                    cancelled=cancelled,
                )[0]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": out["completion"]},
                    "finish_reason": out["finish_reason"],
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": out["completion_tokens"],
                "total_tokens": prompt_tokens + out["completion_tokens"],
            },
        }


def make_server(
    model,
    processor,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str = "art",
    api_key: str | None = None,
    verbose: bool = False,
    limits: ServerLimits | None = None,
):
    """A ThreadingHTTPServer answering `/v1/chat/completions`, `/v1/models` and `/health`."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    limits = limits or ServerLimits()
    engine = _Engine(model, processor, model_name, limits)
    slots = threading.BoundedSemaphore(limits.max_concurrency)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = limits.timeout  # applied to the socket: a stalled client frees its thread

        def log_message(self, fmt: str, *args: Any) -> None:
            if verbose:
                super().log_message(fmt, *args)

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str, headers: dict | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

        def _authorised(self) -> bool:
            if api_key is None or self.headers.get("Authorization") == f"Bearer {api_key}":
                return True
            self._error(401, "invalid API key", "authentication_error")
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                self._send(200, {"status": "ok"})
            elif path != "/v1/models":
                self._error(404, f"no route {self.path}", "not_found")
            elif self._authorised():
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": engine.name, "object": "model", "created": 0, "owned_by": "art_lib"}],
                    },
                )

        def _read_body(self) -> bytes:
            """The body, read only after its declared length passed the limit."""
            value = self.headers.get("Content-Length")
            if value is None:
                return b""
            if not value.strip().isdigit():
                raise _BadRequest(f"invalid Content-Length {value[:40]!r}")
            length = int(value)
            if length > limits.max_body_bytes:
                raise _BadRequest(
                    f"request body of {length} bytes is larger than this server's limit of {limits.max_body_bytes}",
                    status=413,
                )
            raw = self.rfile.read(length)
            if len(raw) < length:
                raise _BadRequest("request body shorter than its Content-Length")
            return raw

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                raw = self._read_body()
            except _BadRequest as err:
                self.close_connection = True  # the unread body must not be parsed as a next request
                self._error(err.status, str(err), "invalid_request_error")
                return
            except TimeoutError:
                self.close_connection = True
                self._error(408, f"request body not received within {limits.timeout} s", "timeout")
                return
            if path != "/v1/chat/completions":
                self._error(404, f"no route {self.path}", "not_found")
                return
            if not self._authorised():
                return
            if not slots.acquire(blocking=False):
                self._error(
                    503,
                    f"server busy: {limits.max_concurrency} requests in progress; retry later",
                    "server_busy",
                    {"Retry-After": "1"},
                )
                return
            try:
                body = json.loads(raw.decode("utf-8") or "{}")
                if not isinstance(body, dict):
                    raise _BadRequest("the request body must be a JSON object")
                answer = engine.chat_completion(body, cancelled=lambda: _client_gone(self.connection))
                if _client_gone(self.connection):
                    self.close_connection = True
                    return
                self._send(200, answer)
            except _BadRequest as err:
                self._error(err.status, str(err), "invalid_request_error")
            except (ValueError, TypeError) as err:
                self._error(400, str(err), "invalid_request_error")
            except Exception as err:  # noqa: BLE001 - report, keep serving
                self._error(500, f"{type(err).__name__}: {err}", "server_error")
            finally:
                slots.release()

    class Server(ThreadingHTTPServer):
        request_queue_size = limits.backlog
        daemon_threads = True

    return Server((host, port), Handler)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: `python -m art_lib.serve --model PATH [--host H] [--port N]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m art_lib.serve", description=main.__doc__)
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id (AutoModelForImageTextToText)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on start)")
    parser.add_argument("--served-model-name", default=None, help="model id reported by /v1/models")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    defaults = ServerLimits()
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="cap on a request's max_tokens (always also capped by the model's context)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=defaults.max_concurrency,
        help="requests waiting or generating at once; more get HTTP 503",
    )
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20)
    parser.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels)
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="socket timeout in seconds")
    parser.add_argument(
        "--allow-local-images",
        metavar="DIR",
        default=None,
        help="also accept image paths (relative to or under DIR); by default only data: URLs",
    )
    args = parser.parse_args(argv)
    limits = ServerLimits(
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        max_tokens=args.max_tokens,
        max_concurrency=args.max_concurrency,
        timeout=args.timeout,
        image_root=args.allow_local_images,
    )

    import torch

    from art_lib.models import load_frozen

    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = load_frozen(args.model, dtype=args.dtype, device=args.device)
    server = make_server(
        model,
        processor,
        args.host,
        args.port,
        args.served_model_name or str(args.model),
        api_key=args.api_key,
        verbose=args.verbose,
        limits=limits,
    )
    host, port = server.server_address[:2]
    # One parseable line: tests (and scripts) wait for it to know the server is up and on which port.
    print(f"art_lib.serve: listening on http://{host}:{port}/v1", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
