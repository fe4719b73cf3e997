"""A minimal OpenAI-compatible server for a checkpoint: `python -m art_lib.serve --model PATH|toy:NAME --port N`.

It runs the checkpoint with HF `generate` (standard-library `http.server`). It exists because
`transformers serve` loads processors with `AutoProcessor`, which needs torchvision for Qwen3.5's video
processor; this server uses `art_lib.models.load_processor`, which does not. It decodes the data-URL
image with PIL, renders the chat template and generates exactly as `art_lib.evaluate.evaluate` does,
so its greedy answers equal the in-process ones; `art_lib.client` queries it. `--model` takes what
`load_frozen` takes: a folder, a hub id or a registered model name such as `toy:base`.

Limits come before work (`ServerLimits`). From the headers alone, before a body byte is read: the
route, the API key, the body's framing and size (`serve_http.body_length`), then a request slot
(past `--max-concurrency`: 503 at once). Connections past `--max-connections` are answered 503
without being read; headers and body each have `--timeout` seconds in all, however slowly they drip
(`serve_http.DeadlineReader`). Then the body goes through one validation layer
(`serve_request.chat_request`: strict JSON, every field checked or refused by name, evaluation's image
rule, no request-supplied chat template unless `--trust-request-chat-template`). Every client error
is a 4xx with an OpenAI error object. Generation stops when the client disconnects, not when it only
half-closes (`serve_http.PeerWatch`).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from .serve_http import (
    MAX_HEADER_BYTES,
    DeadlineReader,
    PeerWatch,
    body_length,
    linger_close,
    read_body,
    refuse_connection,
)
from .serve_request import ChatRequest, RequestError, ServerLimits, chat_request, error_payload

__all__ = ["make_server", "ServerLimits", "main"]


class _Engine:
    """The loaded model + processor behind the server; one generation at a time."""

    def __init__(self, model, processor, name: str, limits: ServerLimits | None = None) -> None:
        self.model, self.processor, self.name = model, processor, name
        self.limits = limits or ServerLimits()
        self.lock = threading.Lock()
        config = getattr(model.config, "text_config", model.config)
        self.context = int(getattr(config, "max_position_embeddings", None) or 2**31)

    def chat_completion(self, raw: bytes, cancelled=None) -> dict:
        """Answer one `/v1/chat/completions` request body; `cancelled()` stops generation early."""
        req = chat_request(raw, self.limits, self.name, self.processor)
        text, prompt_tokens = self._prompt(req)
        room = self.context - prompt_tokens
        if room < 1:
            raise RequestError(
                f"the prompt has {prompt_tokens} tokens: it does not fit the model's context of {self.context}",
                param="messages",
            )
        # Like vLLM's default, a budget past the context is cut to what fits (and a configured cap).
        out = self._generate(req, text, min(req.max_tokens, room, self.limits.max_tokens or room), cancelled)
        completion, finish, tokens = out["completion"], out["finish_reason"], out["completion_tokens"]
        cut = min((i for i in (completion.find(s) for s in req.stop) if i >= 0), default=None)
        if cut is not None:  # OpenAI `stop`: the text ends before the first stop string, which is not returned
            completion, finish = completion[:cut], "stop"
            tokens = min(tokens, len(self.processor.tokenizer(completion, add_special_tokens=False)["input_ids"]))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            },
        }

    def _prompt(self, req: ChatRequest) -> tuple[str, int]:
        """The rendered prompt and its token count (the image's visual tokens included)."""
        try:
            text = self.processor.apply_chat_template(
                req.messages,
                chat_template=req.chat_template,
                tools=req.tools,
                add_generation_prompt=True,
                tokenize=False,
                **req.template_kwargs,
            )
        except Exception as err:  # noqa: BLE001 - template errors are the request's fault
            raise RequestError(f"chat template failed: {err}", param="messages") from err
        prompt_tokens = len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
        if req.images:  # the single <|image_pad|> expands to the image's visual tokens
            from art_lib.evaluate import visual_token_count

            prompt_tokens += visual_token_count(self.processor, req.images[0]) - 1
        return text, prompt_tokens

    def _generate(self, req: ChatRequest, text: str, max_tokens: int, cancelled) -> dict:
        import torch

        from art_lib.evaluate import generate_completions

        with self.lock, torch.random.fork_rng(devices=[]):
            if req.seed is not None:
                torch.manual_seed(req.seed)
            return generate_completions(
                self.model,
                self.processor,
                [text],
                req.images[0] if req.images else None,
                max_new_tokens=max_tokens,
                greedy=req.temperature == 0.0,  # OpenAI semantics: temperature 0 means greedy decoding
                temperature=req.temperature,
                top_p=req.top_p,
                cancelled=cancelled,
            )[0]


class _Handler(BaseHTTPRequestHandler):
    """One connection: requests refused from their headers where possible, bodies read inside a slot."""

    protocol_version = "HTTP/1.1"
    engine: _Engine  # these four are set per server by `make_server`
    api_key: str | None = None
    verbose: bool = False
    slots: threading.BoundedSemaphore

    def setup(self) -> None:
        self.timeout = self.engine.limits.timeout
        super().setup()
        self.rfile.close()  # replaced by reads that share one deadline per request
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.unread = False  # True once answered without reading the body: drained before closing

    def handle_one_request(self) -> None:
        # The request line and headers, however slowly they come (a read-ahead buffer's worth of body allowed).
        self.reader.arm(self.timeout, MAX_HEADER_BYTES + io.DEFAULT_BUFFER_SIZE)
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.reader.over:
            self.send_error(431, f"request line and headers larger than {MAX_HEADER_BYTES} bytes")
            return False
        if self.reader.eof:  # the input ended inside the header block: a request cut short, not one to answer
            self.close_connection = True
            return False
        if self.command != "POST" and ("Transfer-Encoding" in self.headers or self.headers.get("Content-Length")):
            self.close_connection = self.unread = True  # a body this server never reads: not a next request
        return True

    def handle_expect_100(self) -> bool:
        return True  # `100 Continue` is sent once the headers passed their checks (`do_POST`), not before

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.unread:
                linger_close(self.connection, max_bytes=self.engine.limits.max_body_bytes)

    def log_message(self, fmt: str, *args: Any) -> None:
        if self.verbose:
            super().log_message(fmt, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, too many headers, unknown method), as JSON too."""
        self.close_connection = self.unread = True
        self._error(RequestError(message or HTTPStatus(code).phrase, code))

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.connection.settimeout(self.timeout)  # reads left it at what remained of their deadline
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, err: RequestError, headers: dict | None = None) -> None:
        self._send(err.status, error_payload(err.status, str(err), err.kind, err.param), headers)

    def _refuse(self, err: RequestError, headers: dict | None = None) -> None:
        """Answer before (or without finishing) reading the body, which then must not be read as a next request."""
        self.close_connection = self.unread = True
        self._error(err, headers)

    def _route(self, path: str) -> None:
        if self.path.split("?", 1)[0].rstrip("/") != path:
            raise RequestError(f"no route {self.command} {self.path[:100]}", 404, kind="not_found_error")
        if self.api_key is not None and self.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise RequestError("invalid API key", 401, kind="authentication_error")

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.split("?", 1)[0].rstrip("/") == "/health":
            self._send(200, {"status": "ok"})
            return
        try:
            self._route("/v1/models")
        except RequestError as err:
            self._error(err)
            return
        model = {"id": self.engine.name, "object": "model", "created": 0, "owned_by": "art_lib"}
        self._send(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:  # noqa: N802
        limits = self.engine.limits
        try:  # from the headers alone, before a byte of the body is read
            self._route("/v1/chat/completions")
            length = body_length(self.headers, limits.max_body_bytes)
        except RequestError as err:
            self._refuse(err)
            return
        if not self.slots.acquire(blocking=False):
            busy = f"server busy: {limits.max_concurrency} requests in progress; retry later"
            self._refuse(RequestError(busy, 503, kind="server_busy"), {"Retry-After": "1"})
            return
        try:
            if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version >= "HTTP/1.1":
                self.send_response_only(100)
                self.end_headers()
            self._complete(length)
        finally:
            self.slots.release()

    def _complete(self, length: int) -> None:
        """Read the body (its own deadline), validate and answer it; the caller holds a slot."""
        self.reader.arm(self.timeout)
        try:
            raw = read_body(self.rfile, length, self.engine.limits.max_body_bytes)
        except RequestError as err:
            self._refuse(err)
            return
        except TimeoutError:
            self._refuse(RequestError(f"request body not received within {self.timeout} s", 408, kind="timeout"))
            return
        watch = PeerWatch(self.connection, self.request_version == "HTTP/1.1")
        try:
            answer = self.engine.chat_completion(raw, cancelled=watch.gone)
        except RequestError as err:
            self._error(err)
            return
        except Exception as err:  # noqa: BLE001 - report, keep serving
            self._error(RequestError(f"{type(err).__name__}: {err}", 500, kind="server_error"))
            return
        if watch.gone():
            self.close_connection = True
            return
        self._send(200, answer)


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
    from http.server import ThreadingHTTPServer

    limits = limits or ServerLimits()
    engine = _Engine(model, processor, model_name, limits)
    slots = threading.BoundedSemaphore(limits.max_concurrency)
    handler = type("Handler", (_Handler,), dict(engine=engine, api_key=api_key, verbose=verbose, slots=slots))
    connections = threading.BoundedSemaphore(limits.max_connections)

    class Server(ThreadingHTTPServer):
        request_queue_size = limits.backlog
        daemon_threads = True

        def process_request(self, request, client_address) -> None:
            if connections.acquire(blocking=False):
                super().process_request(request, client_address)
            else:  # answered and closed in a short-lived thread of its own, its request never read
                threading.Thread(target=refuse_connection, args=(request, limits.max_connections), daemon=True).start()

        def handle_error(self, request, client_address) -> None:
            if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client gone is no error
                super().handle_error(request, client_address)

        def process_request_thread(self, request, client_address) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                connections.release()

    return Server((host, port), handler)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: `python -m art_lib.serve --model PATH|toy:NAME [--host H] [--port N]`."""
    # Before the heavy imports and the model: --help, a bad flag or a bad limit answer at once.
    args = _parser().parse_args(argv)
    limits = _limits(args)
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


def _parser() -> argparse.ArgumentParser:
    """The command line of `main`: the model to load, where to listen, and the `ServerLimits` flags."""
    parser = argparse.ArgumentParser(prog="python -m art_lib.serve", description=main.__doc__)
    parser.add_argument(
        "--model",
        required=True,
        help="checkpoint folder, hub id or registered model name (toy:base): what load_frozen takes",
    )
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
        help="requests reading their body, waiting or generating at once; more get HTTP 503",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="connections served at once (slow clients included); more get HTTP 503 unread",
    )
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20)
    parser.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels)
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        help="seconds for a request's headers, again for its body, and per write",
    )
    parser.add_argument(
        "--allow-local-images",
        metavar="DIR",
        default=None,
        help="also accept image paths (relative to or under DIR); by default only data: URLs",
    )
    parser.add_argument(
        "--trust-request-chat-template",
        action="store_true",
        help="let requests bring their own chat template (a template is code the server runs); off by default",
    )
    return parser


def _limits(args: argparse.Namespace) -> ServerLimits:
    """The `ServerLimits` the parsed command line (`_parser`) asks for."""
    return ServerLimits(
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_image_pixels=args.max_image_pixels,
        max_tokens=args.max_tokens,
        max_concurrency=args.max_concurrency,
        timeout=args.timeout,
        max_connections=args.max_connections,
        image_root=args.allow_local_images,
        trust_request_chat_template=args.trust_request_chat_template,
    )


if __name__ == "__main__":
    main()
