"""Serve and query a learned artwork through OpenAI-compatible chat engines.

The artwork is an ordinary PNG: any engine that accepts user images serves it unmodified. This
module holds the three ways the kit talks to such engines, all scored by
:func:`art_lib.evaluate.score_completions` (one definition of accuracy for every backend):

* :class:`ChatClient` / :func:`evaluate_server`: a standard-library client for an OpenAI-compatible
  ``/v1/chat/completions`` endpoint (``vllm serve``, ``transformers serve``, this module's server).
  The PNG file's bytes are sent unchanged as a ``data:image/png;base64,...`` URL, the image part
  before the text part, as in the kit's prompts, and thinking is switched off with vLLM's
  ``chat_template_kwargs: {"enable_thinking": false}``.
* :func:`evaluate_vllm`: offline vLLM (``LLM.chat``) with the same messages, when vLLM is installed.
* ``python -m art_lib.serve --model PATH --port N``: a minimal OpenAI-compatible server (standard
  library ``http.server``) running the checkpoint with HF ``generate``. It exists because
  ``transformers serve`` loads processors with ``AutoProcessor``, which needs torchvision for
  Qwen3.5's video processor; this server uses :func:`art_lib.models.load_processor`, which does not.
  It decodes the data-URL image with PIL, renders the chat template and generates exactly as
  :func:`art_lib.evaluate.evaluate` does, so its greedy answers equal the in-process ones.
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
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # heavy imports stay out of import time
    from PIL import Image

    from art_lib.evaluate import EvalResult

__all__ = [
    "image_data_url",
    "openai_messages",
    "message_text",
    "ChatClient",
    "evaluate_server",
    "evaluate_vllm",
    "make_server",
    "main",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VLLM_INSTALL_HINT = (
    "vLLM is not installed: pip install 'art-lib[vllm]' (needs a CUDA GPU); "
    "or serve the model (`vllm serve ...` / `python -m art_lib.serve`) and use evaluate_server"
)


# --------------------------------------------------------------------------- #
# Messages
# --------------------------------------------------------------------------- #


def image_data_url(png_path: str | os.PathLike) -> str:
    """The PNG file's bytes, unchanged, as a ``data:image/png;base64,...`` URL."""
    data = Path(png_path).read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        # A lossy or re-encoded file would not be the artwork that was learned.
        raise ValueError(f"{os.fspath(png_path)!r} is not a PNG file; artworks are served as lossless PNGs")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _openai_history(messages: Sequence[dict]) -> list[dict]:
    """Kit messages -> OpenAI wire form: tool-call arguments as JSON strings (the API's type)."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                call = dict(call)
                fn = dict(call.get("function") or {})
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments") or {}, ensure_ascii=False)
                call["function"] = fn
                call.setdefault("type", "function")
                calls.append(call)
            m["tool_calls"] = calls
        out.append(m)
    return out


def _image_part(png_path: str | os.PathLike) -> dict:
    """OpenAI ``image_url`` content part carrying the PNG as a data URL."""
    return {"type": "image_url", "image_url": {"url": image_data_url(png_path)}}


def openai_messages(example: dict, image: str | os.PathLike | dict | None = None) -> list[dict]:
    """Chat messages of a benchmark example for an OpenAI server: image part first, then the text.

    ``image``: a PNG path, an ``image_url`` part already built (to encode the PNG once for many
    requests), or None for a text-only turn.
    """
    from art_lib.evaluate import example_messages

    part = image if isinstance(image, dict) or image is None else _image_part(image)
    return _openai_history(example_messages(example, part))


def message_text(message: dict) -> str:
    """Assistant text of a response message; parsed ``tool_calls`` are written back as Qwen blocks.

    A server run with a tool parser (vLLM ``--enable-auto-tool-choice``) returns calls in
    ``tool_calls`` instead of the text; rendering them as ``<tool_call>{json}</tool_call>`` lets
    the same scorer read both forms.
    """
    text = message.get("content") or ""
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False)
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                pass  # keep the raw string: the scorer will reject it
        block = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
        text += f"\n<tool_call>\n{block}\n</tool_call>"
    return text


# --------------------------------------------------------------------------- #
# Client
# --------------------------------------------------------------------------- #


class ChatClient:
    """Minimal OpenAI-compatible chat client (standard library only)."""

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout: float = 600.0) -> None:
        """``base_url`` like ``http://127.0.0.1:8000/v1`` (``/v1`` is added when missing)."""
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        """One JSON request; HTTP errors raise RuntimeError with the server's message."""
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            body = err.read().decode("utf-8", errors="replace")
            raise RuntimeError(f"{method} {self.base_url + path} failed with HTTP {err.code}: {body}") from err

    def models(self) -> list[str]:
        """Model ids the server lists at ``/v1/models``."""
        return [m["id"] for m in self.request("GET", "/models").get("data", [])]

    def complete(self, messages: list[dict], *, max_tokens: int = 512, temperature: float = 0.0,
                 top_p: float | None = None, seed: int | None = None, tools: list[dict] | None = None,
                 enable_thinking: bool = False, **extra: Any) -> dict:
        """POST ``/chat/completions`` and return the raw response JSON."""
        payload: dict[str, Any] = {
            "model": self.model, "messages": messages, "max_tokens": int(max_tokens),
            "temperature": float(temperature),
            # vLLM / transformers-serve convention for chat-template variables (Qwen's thinking switch).
            "chat_template_kwargs": {"enable_thinking": bool(enable_thinking)},
        }
        if top_p is not None:
            payload["top_p"] = float(top_p)
        if seed is not None:
            payload["seed"] = int(seed)
        if tools:
            payload["tools"] = tools
        payload.update(extra)
        return self.request("POST", "/chat/completions", payload)

    def chat(self, prompt_text: str, image_png_path: str | os.PathLike | None = None, *, max_tokens: int = 512,
             temperature: float = 0.0, tools: list[dict] | None = None, enable_thinking: bool = False,
             system: str | None = None, history: list[dict] | None = None, **kwargs: Any) -> str:
        """One user turn (the PNG first, then the text); returns the assistant's text."""
        example = {"prompt": prompt_text, "meta": {"system": system, "messages": history or []}}
        response = self.complete(openai_messages(example, image_png_path), max_tokens=max_tokens,
                                 temperature=temperature, tools=tools, enable_thinking=enable_thinking, **kwargs)
        return message_text(response["choices"][0]["message"])


def _finish_reason(reason: Any) -> str:
    """Finish reasons as OpenAI spells them (vLLM and HF agree on stop/length)."""
    return str(reason) if reason is not None else "stop"


def evaluate_server(client: ChatClient, examples: Sequence[dict], benchmark: str, *,
                    image: str | os.PathLike | None = None, max_tokens: int = 512, temperature: float = 0.0,
                    top_p: float | None = None, seed: int | None = None, enable_thinking: bool = False,
                    concurrency: int = 1, progress: bool = True, label: str = "") -> "EvalResult":
    """Query an OpenAI-compatible server for every example (with the PNG, or text only) and score it.

    ``concurrency`` > 1 sends requests in parallel threads (vLLM batches them); rows keep example order.
    """
    from art_lib.evaluate import score_completions
    from art_lib.rewards import get_scorer
    from tqdm.auto import tqdm

    scorer = get_scorer(benchmark)  # unknown benchmark: ValueError before any request
    examples = list(examples)
    # Encode the PNG once: every request carries the same image part.
    part = _image_part(image) if image is not None else None

    def one(ex: dict) -> dict:
        messages = openai_messages(ex, part)
        resp = client.complete(messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                               seed=seed, tools=(ex.get("meta") or {}).get("tools"),
                               enable_thinking=enable_thinking)
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        return {"completion": message_text(choice["message"]),
                "completion_tokens": usage.get("completion_tokens"),
                "finish_reason": _finish_reason(choice.get("finish_reason"))}

    with tqdm(total=len(examples), disable=not progress, desc=label or f"server {benchmark}", unit="ex") as bar:
        with ThreadPoolExecutor(max_workers=max(1, int(concurrency))) as pool:
            outs = []
            for out in pool.map(one, examples):
                outs.append(out)
                bar.update(1)
    config = {"server": client.base_url, "model": client.model,
              "image": os.fspath(image) if image is not None else None, "max_tokens": max_tokens,
              "temperature": temperature, "enable_thinking": enable_thinking}
    return score_completions(
        examples, [o["completion"] for o in outs], benchmark, scorer=scorer, label=label, config=config,
        extra={"completion_tokens": [o["completion_tokens"] for o in outs],
               "finish_reason": [o["finish_reason"] for o in outs]},
    )


# --------------------------------------------------------------------------- #
# Offline vLLM
# --------------------------------------------------------------------------- #


def evaluate_vllm(model_id: str, examples: Sequence[dict], benchmark: str, *,
                  image: str | os.PathLike | None = None, max_tokens: int = 512, temperature: float = 0.0,
                  top_p: float = 1.0, seed: int | None = None, enable_thinking: bool = False, llm: Any = None,
                  llm_kwargs: dict | None = None, progress: bool = True, label: str = "") -> "EvalResult":
    """Evaluate with offline vLLM (``LLM.chat``), the PNG sent as a data URL like to a server.

    Pass a ready ``llm`` (a ``vllm.LLM``) to reuse one engine across runs; otherwise one is built
    from ``model_id`` and ``llm_kwargs`` (e.g. ``max_model_len``, ``gpu_memory_utilization``).
    """
    try:
        import vllm
    except ImportError as err:
        raise ImportError(VLLM_INSTALL_HINT) from err
    from art_lib.evaluate import score_completions
    from art_lib.rewards import get_scorer

    scorer = get_scorer(benchmark)
    examples = list(examples)
    if llm is None:
        kwargs = {"limit_mm_per_prompt": {"image": 1}, **(llm_kwargs or {})}
        llm = vllm.LLM(model=model_id, **kwargs)
    params = vllm.SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    conversations = [openai_messages(ex, image) for ex in examples]
    # LLM.chat takes one tools list per call: group examples that share their tools.
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        tools = (ex.get("meta") or {}).get("tools") or None
        groups.setdefault(json.dumps(tools, sort_keys=True), []).append(i)
    outs: list[dict] = [{}] * len(examples)
    for key, idx in groups.items():
        results = llm.chat([conversations[i] for i in idx], params, use_tqdm=progress, tools=json.loads(key),
                           chat_template_kwargs={"enable_thinking": enable_thinking})
        for i, res in zip(idx, results):
            o = res.outputs[0]
            outs[i] = {"completion": o.text, "completion_tokens": len(o.token_ids),
                       "finish_reason": _finish_reason(o.finish_reason)}
    config = {"engine": "vllm", "model": model_id, "image": os.fspath(image) if image is not None else None,
              "max_tokens": max_tokens, "temperature": temperature, "enable_thinking": enable_thinking}
    return score_completions(
        examples, [o["completion"] for o in outs], benchmark, scorer=scorer, label=label, config=config,
        extra={"completion_tokens": [o["completion_tokens"] for o in outs],
               "finish_reason": [o["finish_reason"] for o in outs]},
    )


# --------------------------------------------------------------------------- #
# Server
# --------------------------------------------------------------------------- #


class _BadRequest(Exception):
    """A client error, answered with HTTP 400."""


def _decode_image_url(url: str) -> "Image.Image":
    """A ``data:image/...;base64,`` URL or a local path/``file://`` URL -> PIL image (pixels loaded)."""
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
    elif url.startswith("file://") or os.path.isabs(url):
        source = url[len("file://"):] if url.startswith("file://") else url
    else:
        # No network fetches: the server may run where nothing outside can be reached.
        raise _BadRequest("only data: URLs and local file paths are supported for images")
    try:
        with Image.open(source) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError) as err:
        raise _BadRequest(f"cannot decode image: {err}") from err


def _template_messages(messages: Any) -> tuple[list[dict], list["Image.Image"]]:
    """OpenAI messages -> chat-template messages (image parts as ``{"type": "image"}``) and the images."""
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty list")
    out, images = [], []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise _BadRequest(f"invalid message: {m!r}")
        m = dict(m)
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    parts.append({"type": "text", "text": part.get("text", "")})
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str):
                        raise _BadRequest("image_url part without a url")
                    images.append(_decode_image_url(url))
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


class _Engine:
    """The loaded model + processor behind the server; one generation at a time."""

    def __init__(self, model, processor, name: str) -> None:
        self.model, self.processor, self.name = model, processor, name
        self.lock = threading.Lock()

    def chat_completion(self, body: dict) -> dict:
        """Answer one ``/v1/chat/completions`` request body."""
        import torch

        from art_lib.evaluate import generate_completions

        if body.get("stream"):
            raise _BadRequest("streaming is not supported by this server")
        if int(body.get("n", 1)) != 1:
            raise _BadRequest("only n=1 is supported")
        messages, images = _template_messages(body.get("messages"))
        if len(images) > 1:
            raise _BadRequest("at most one image per request is supported")
        template_kwargs = dict(body.get("chat_template_kwargs") or {})
        try:
            text = self.processor.apply_chat_template(
                messages, tools=body.get("tools") or None, add_generation_prompt=True, tokenize=False,
                **template_kwargs,
            )
        except Exception as err:  # noqa: BLE001 - template errors are the request's fault
            raise _BadRequest(f"chat template failed: {err}") from err
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 512
        # OpenAI semantics: temperature defaults to 1; 0 means greedy decoding.
        temperature = float(body["temperature"]) if body.get("temperature") is not None else 1.0
        top_p = float(body["top_p"]) if body.get("top_p") is not None else 1.0
        seed = body.get("seed")
        with self.lock:
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(int(seed))
                out = generate_completions(
                    self.model, self.processor, [text], images[0] if images else None,
                    max_new_tokens=int(max_tokens), greedy=temperature == 0.0, temperature=temperature, top_p=top_p,
                )[0]
        prompt_tokens = len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        if images:  # the single <|image_pad|> expands to the image's visual tokens
            from art_lib.evaluate import visual_token_count

            prompt_tokens += visual_token_count(self.processor, images[0]) - 1
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out["completion"]},
                         "finish_reason": out["finish_reason"]}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out["completion_tokens"],
                      "total_tokens": prompt_tokens + out["completion_tokens"]},
        }


def make_server(model, processor, host: str = "127.0.0.1", port: int = 8000, model_name: str = "art",
                api_key: str | None = None, verbose: bool = False):
    """A ThreadingHTTPServer answering ``/v1/chat/completions``, ``/v1/models`` and ``/health``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    engine = _Engine(model, processor, model_name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            if verbose:
                super().log_message(fmt, *args)

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

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
                self._send(200, {"object": "list", "data": [
                    {"id": engine.name, "object": "model", "created": 0, "owned_by": "art_lib"}]})

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path != "/v1/chat/completions":
                self._error(404, f"no route {self.path}", "not_found")
                return
            if not self._authorised():
                return
            try:
                body = json.loads(raw.decode("utf-8") or "{}")
                if not isinstance(body, dict):
                    raise _BadRequest("the request body must be a JSON object")
                self._send(200, engine.chat_completion(body))
            except (_BadRequest, ValueError, TypeError) as err:
                self._error(400, str(err), "invalid_request_error")
            except Exception as err:  # noqa: BLE001 - report, keep serving
                self._error(500, f"{type(err).__name__}: {err}", "server_error")

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m art_lib.serve --model PATH [--host H] [--port N]``."""
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
    args = parser.parse_args(argv)

    import torch

    from art_lib.models import load_frozen

    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = load_frozen(args.model, dtype=args.dtype, device=args.device)
    server = make_server(model, processor, args.host, args.port, args.served_model_name or str(args.model),
                         api_key=args.api_key, verbose=args.verbose)
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
