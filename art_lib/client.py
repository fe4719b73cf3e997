"""Query a learned artwork through OpenAI-compatible chat engines (the client side).

The artwork is an ordinary PNG: any engine that accepts user images serves it unmodified. Scores come from
`art_lib.scoring.score_completions` (one definition of accuracy for every backend):

* `ChatClient` / `evaluate_server`: a standard-library client for an OpenAI-compatible
  `/v1/chat/completions` endpoint (`vllm serve`, `transformers serve`, `python -m art_lib.serve`).
  The PNG file's bytes are sent unchanged as a `data:image/png;base64,...` URL, the image part before
  the text part, as in the kit's prompts, and thinking is switched off with vLLM's
  `chat_template_kwargs: {"enable_thinking": false}`. Calls a server returns in `tool_calls` are
  rendered back into the text by `art_lib.rewards.completion_text`, so one parser reads both forms.

Offline vLLM (and vLLM servers sent the kit's own rendered prompts) is `evaluate.evaluate(engine="vllm" or URLs)`,
through the one `generation.Generator` interface; `evaluate_server` stays the way to score a deployed server as
its users reach it (the server's own chat template, tools, `chat_template_kwargs`), which that interface does not
send (it sends the kit's rendered prompt through a pass-through template).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rewards import completion_text, get_scorer
from .scoring import score_outputs

if TYPE_CHECKING:  # heavy imports stay out of import time
    from art_lib.scoring import EvalResult

__all__ = ["image_data_url", "openai_messages", "ChatClient", "evaluate_server"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- #
# Messages
# --------------------------------------------------------------------------- #


def image_data_url(png_path: str | os.PathLike) -> str:
    """The PNG file's bytes, unchanged, as a `data:image/png;base64,...` URL."""
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
    """OpenAI `image_url` content part carrying the PNG as a data URL."""
    return {"type": "image_url", "image_url": {"url": image_data_url(png_path)}}


def openai_messages(example: dict, image: str | os.PathLike | dict | None = None) -> list[dict]:
    """Chat messages of a benchmark example for an OpenAI server: image part first, then the text.

    `image`: a PNG path, an `image_url` part already built (to encode the PNG once for many
    requests), or None for a text-only turn.
    """
    from .prompting import example_messages

    part = image if isinstance(image, dict) or image is None else _image_part(image)
    return _openai_history(example_messages(example, part))


# --------------------------------------------------------------------------- #
# Client
# --------------------------------------------------------------------------- #


class ChatClient:
    """Minimal OpenAI-compatible chat client (standard library only)."""

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout: float = 600.0) -> None:
        """`base_url` like `http://127.0.0.1:8000/v1` (`/v1` is added when missing)."""
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def request(self, method: str, path: str, payload: dict | None = None) -> Any:
        """One JSON request; returns the decoded JSON answer (a plain-text answer as a str, as vLLM's
        `/load_lora_adapter` gives); HTTP errors raise RuntimeError with the server's message."""
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read().decode("utf-8")
        except urllib.error.HTTPError as err:
            body = err.read().decode("utf-8", errors="replace")
            raise RuntimeError(f"{method} {self.base_url + path} failed with HTTP {err.code}: {body}") from err
        try:
            return json.loads(body)
        except ValueError:
            return body

    def models(self) -> list[str]:
        """Model ids the server lists at `/v1/models`."""
        return [m["id"] for m in self.request("GET", "/models").get("data", [])]

    def complete(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float | None = None,
        seed: int | None = None,
        tools: list[dict] | None = None,
        enable_thinking: bool = False,
        **extra: Any,
    ) -> dict:
        """POST `/chat/completions` and return the raw response JSON."""
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": int(max_tokens),
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

    def chat(
        self,
        prompt_text: str,
        image_png_path: str | os.PathLike | None = None,
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        tools: list[dict] | None = None,
        enable_thinking: bool = False,
        system: str | None = None,
        history: list[dict] | None = None,
        **kwargs: Any,
    ) -> str:
        """One user turn (the PNG first, then the text); returns the assistant's text."""
        example = {"prompt": prompt_text, "meta": {"system": system, "messages": history or []}}
        response = self.complete(
            openai_messages(example, image_png_path),
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            enable_thinking=enable_thinking,
            **kwargs,
        )
        return completion_text(response["choices"][0]["message"])


def _finish_reason(reason: Any) -> str:
    """Finish reasons as OpenAI spells them (vLLM and HF agree on stop/length)."""
    return str(reason) if reason is not None else "stop"


def evaluate_server(
    client: ChatClient,
    examples: Sequence[dict],
    benchmark: str,
    *,
    image: str | os.PathLike | None = None,
    max_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int | None = None,
    enable_thinking: bool = False,
    concurrency: int = 1,
    progress: bool = True,
    label: str = "",
) -> EvalResult:
    """Query an OpenAI-compatible server for every example (with the PNG, or text only) and score it.

    `concurrency` > 1 sends requests in parallel threads (vLLM batches them); rows keep example order.
    """
    from tqdm.auto import tqdm

    scorer = get_scorer(benchmark)  # unknown benchmark: ValueError before any request
    examples = list(examples)
    # Encode the PNG once: every request carries the same image part.
    part = _image_part(image) if image is not None else None

    def one(ex: dict) -> dict:
        messages = openai_messages(ex, part)
        resp = client.complete(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            tools=(ex.get("meta") or {}).get("tools"),
            enable_thinking=enable_thinking,
        )
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        return {
            "completion": completion_text(choice["message"]),
            "completion_tokens": usage.get("completion_tokens"),
            "finish_reason": _finish_reason(choice.get("finish_reason")),
        }

    with tqdm(total=len(examples), disable=not progress, desc=label or f"server {benchmark}", unit="ex") as bar:
        with ThreadPoolExecutor(max_workers=max(1, int(concurrency))) as pool:
            outs = []
            for out in pool.map(one, examples):
                outs.append(out)
                bar.update(1)
    config = {
        "server": client.base_url,
        "model": client.model,
        "image": os.fspath(image) if image is not None else None,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "enable_thinking": enable_thinking,
    }
    return score_outputs(examples, outs, benchmark, scorer=scorer, label=label, config=config)
