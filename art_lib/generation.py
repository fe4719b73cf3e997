"""One way to sample completions of rendered prompts: the `Generator` protocol and its OpenAI-server backend.

A generator takes the kit's rendered prompts (`prompting.example_text`: the model's chat template, one
`<|image_pad|>` where the image goes), what the trained method sends (an 8-bit PIL image, a saved LoRA adapter
folder, or neither) and the `Sampling` settings, and returns per prompt `n` `Completion`s with the engine's
exact token ids. Backends: `hf_generator.HFGenerator` (the model in this process, what evaluation uses by default),
the offline engine (`vllm_engine.EngineGenerator`, one `vllm.LLM` in this process) and `ServerGenerator`, any
number of running vLLM OpenAI-compatible servers. Only the HF backend is also sent `ImageInputs`: the float
pixels or embeddings a method trains (HF rollouts, soft prompts), which no engine can be sent.

Because the frozen weights never change, a server needs nothing from the trainer but the artwork (a PNG data URL
in each request) or, for LoRA, the adapter folder, loaded at run time under a new name whenever it changed.
RL rollouts go through the same interface for every backend (`rollout.sample_rollout`: HF is sent the trainer's
float image, an engine what the method serves), and `rollout.completions_rollout` turns the completions into a
`Rollout`.

A server must run with `--trust-request-chat-template` (each request carries a pass-through chat template, so
the server tokenises exactly the kit's rendered text; the prompt ids it reports are checked against the kit's),
and, for LoRA, with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` in its environment. Adapter
folders are written to this machine's temporary directory: the servers must be able to read that path.
"""

from __future__ import annotations

import base64
import io
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .client import ChatClient

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Sampling",
    "Completion",
    "ImageInputs",
    "Generator",
    "AdapterFolders",
    "engine_image",
    "method_inputs",
    "server_urls",
    "spread",
    "ServerGenerator",
    "PASSTHROUGH_TEMPLATE",
]

#: The chat template each server request carries: the message's text as is (vLLM keeps a placeholder the text
#: already holds), so the server's prompt is the kit's rendered prompt token for token.
PASSTHROUGH_TEMPLATE = "{{ messages[0]['content'] }}"

SOFT_PROMPT_MESSAGE = (
    "a soft prompt cannot be served by vLLM (or any OpenAI-compatible engine): it is a tensor of input "
    "embeddings, which the chat API has no field for; serve an ART artwork (PNG) or a LoRA adapter instead"
)

ENGINE_IMAGE_MESSAGE = (
    "an engine is sent the artwork as an 8-bit PIL image (or PNG); float pixels and embeddings (ImageInputs) are "
    "shown by the HF backend only (hf_generator.HFGenerator)"
)


@dataclass(frozen=True)
class Sampling:
    """How to sample: `n` completions per prompt of at most `max_new_tokens` tokens."""

    n: int = 1
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None  # prompt i's samples use seeds seed + i * n ... (vLLM adds the sample's index)
    greedy: bool = False  # argmax decoding (temperature 0); `temperature` and `top_p` are then unused
    logprobs: bool = False  # return the sampled tokens' log-probabilities
    suppress_token_ids: tuple[int, ...] = ()  # never sampled (logit bias -100, vLLM's floor), as HF's suppress_tokens

    @property
    def sample_temperature(self) -> float:
        return 0.0 if self.greedy else self.temperature


@dataclass
class Completion:
    """One sampled completion: the engine's token ids (stop token included), its text and why it ended."""

    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" or "length"
    logprobs: list[float] | None = None  # (len(token_ids),) with Sampling.logprobs
    prompt_token_ids: list[int] | None = None  # the prompt as the engine tokenised it (image tokens expanded)


@dataclass(frozen=True)
class ImageInputs:
    """What a method shows the model in place of a PIL image, for the HF backend only: the processor's image dict
    `image` (`pixel_values`, None for a soft prompt, and `image_grid_thw`; None: no image, as LoRA's rollouts) and/or
    the vision tower's output `embeds` (computed from `image` when None)."""

    image: dict | None
    embeds: Any = None  # torch.Tensor (visual tokens, hidden size)


class Generator(Protocol):
    """Samples completions of rendered prompts; `adapters` saves a LoRA method's adapter when it changed."""

    adapters: AdapterFolders

    def generate(
        self,
        prompts: Sequence[str],
        *,
        image: Image.Image | ImageInputs | None,
        adapter: Path | None,
        sampling: Sampling,
    ) -> list[list[Completion]]:
        """Per prompt, `sampling.n` completions, all showing `image` (or none) through `adapter` (or none).

        `image`: an 8-bit PIL image (every backend), None (text only) or `ImageInputs` (HF only: an engine raises
        a ValueError, see `engine_image`)."""
        ...

    def close(self) -> None: ...


class AdapterFolders:
    """A LoRA method's adapter saved to a new folder whenever its weights changed; the previous one is deleted.

    A new folder per version because engines cache an adapter by its name or id and path: reusing either would
    keep serving the old weights.
    """

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._key: str | None = None
        self._path: Path | None = None
        self.count = 0

    def folder(self, method) -> Path:
        """The folder holding `method`'s current adapter (saved now if its weights changed)."""
        from .models import weights_hash

        key = weights_hash(method.state_dict())
        if key != self._key:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="art_lora_")
            self.count += 1
            path = Path(self._tmp.name) / f"adapter_{self.count}"
            method.save(path)
            if self._path is not None:
                shutil.rmtree(self._path, ignore_errors=True)  # no engine asks for an old version again
            self._key, self._path = key, path
        return self._path

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def method_inputs(method, adapters: AdapterFolders) -> tuple[Image.Image | None, Path | None]:
    """What a training method sends a generator (`Method.sampler_inputs`): ART its 8-bit artwork, LoRA its saved
    adapter folder; a soft prompt raises a ValueError (no engine can be sent embeddings)."""
    return method.sampler_inputs(adapters)


def engine_image(image) -> Image.Image | None:
    """`image` as an engine is sent it (a PIL image or None); `ImageInputs` raise a ValueError (tensors and
    embeddings only go to `hf_generator.HFGenerator`)."""
    if isinstance(image, ImageInputs):
        soft = image.image is not None and image.image.get("pixel_values") is None
        raise ValueError(SOFT_PROMPT_MESSAGE if soft else ENGINE_IMAGE_MESSAGE)
    return image


def server_urls(engine) -> list[str] | None:
    """The server URLs an engine setting names (`"http://host:port/v1"`, comma-separated, or a list), else None."""
    items = engine.split(",") if isinstance(engine, str) else engine
    if not isinstance(items, (list, tuple)) or not items:
        return None
    urls = [str(u).strip() for u in items if isinstance(u, str)]
    if len(urls) != len(items) or not all(u.startswith(("http://", "https://")) for u in urls):
        return None
    return urls


def closed_after(generator, engine):
    """A context that closes `generator` on exit when it was built from `engine` naming server URLs: it holds the
    adapters this caller loaded into the servers (unloaded on close; the servers run on). A Generator or engine the
    caller passed in stays open: it is the caller's to close."""
    return closing(generator) if server_urls(engine) is not None else nullcontext()


def spread(num_prompts: int, num_servers: int, start: int = 0) -> list[int]:
    """The server of each prompt: round-robin from `start` (all samples of one prompt go to one server)."""
    return [(start + i) % num_servers for i in range(num_prompts)]


def png_data_url(image: Image.Image) -> str:
    """An 8-bit PIL image as a lossless `data:image/png;base64,...` URL."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_request(prompt: str, image_url: str | None, model: str, sampling: Sampling, seed: int | None) -> dict:
    """The `/chat/completions` body that samples `prompt` (rendered by the kit) as the offline engine would.

    Every sampling field is explicit: a server fills unset ones from the checkpoint's generation config (top_k,
    penalties), which the offline engine and HF rollouts do not use.
    """
    content: Any = prompt if image_url is None else [
        {"type": "image_url", "image_url": {"url": image_url}},
        {"type": "text", "text": prompt},
    ]  # fmt: skip
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "chat_template": PASSTHROUGH_TEMPLATE,
        "n": sampling.n,
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.sample_temperature,
        "top_p": 1.0 if sampling.greedy else sampling.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "return_token_ids": True,
        "skip_special_tokens": True,
    }
    if seed is not None:
        body["seed"] = seed
    if sampling.logprobs:
        body.update(logprobs=True, top_logprobs=0)
    if sampling.suppress_token_ids:
        body["logit_bias"] = {str(i): -100.0 for i in sampling.suppress_token_ids}
    return body


def parse_choices(response: dict) -> list[Completion]:
    """A `/chat/completions` response (with `return_token_ids`) as Completions, in sample order."""
    prompt_ids = response.get("prompt_token_ids")
    out = []
    for choice in sorted(response["choices"], key=lambda c: c["index"]):
        if choice.get("token_ids") is None:
            raise RuntimeError("the server returned no token ids: it must be a vLLM server (return_token_ids)")
        lp = choice.get("logprobs")
        out.append(
            Completion(
                token_ids=list(choice["token_ids"]),
                text=choice["message"].get("content") or "",
                finish_reason=str(choice.get("finish_reason") or "stop"),
                logprobs=[t["logprob"] for t in lp["content"]] if lp else None,
                prompt_token_ids=prompt_ids,
            )
        )
    return out


class ServerGenerator:
    """Completions from running vLLM OpenAI-compatible servers, requests spread round-robin over their URLs.

    Each URL is checked on construction (it answers, lists a model, accepts the pass-through chat template), so
    a wrong URL or a server started without `--trust-request-chat-template` fails before training starts.
    """

    def __init__(self, urls: str | Sequence[str], *, timeout: float = 600.0, max_concurrency: int = 64) -> None:
        self.urls = server_urls(urls) or []
        if not self.urls:
            raise ValueError(f"not a server URL or list of URLs: {urls!r} (e.g. 'http://127.0.0.1:8000/v1')")
        self.clients = [self._connect(url, timeout) for url in self.urls]
        self.max_concurrency = max_concurrency
        self.adapters = AdapterFolders()
        self._next = 0  # the server the next prompt goes to
        self._adapter: tuple[Path, str] | None = None  # (folder, the name it is loaded under on every server)
        run = secrets.token_hex(3)  # names stay new on a server that outlives this run
        self._names = (f"art-lora-{run}-{k}" for k in range(1, 1 << 30))

    @staticmethod
    def _connect(url: str, timeout: float) -> ChatClient:
        """A client for the base model `url` serves, after checking the server answers as rollouts need."""
        probe = ChatClient(url, "", timeout=10.0)
        try:
            listed = probe.request("GET", "/models").get("data", [])
        except OSError as err:
            raise ConnectionError(f"no vLLM server answers at {probe.base_url}: {err}") from err
        base = [m["id"] for m in listed if not m.get("parent")]
        if not base:
            raise ConnectionError(f"the server at {probe.base_url} lists no model")
        client = ChatClient(url, base[0], timeout=timeout)
        try:
            client.request(
                "POST", "/chat/completions", chat_request("hi", None, base[0], Sampling(max_new_tokens=1), 0)
            )
        except RuntimeError as err:
            if "trust-request-chat-template" in str(err):
                raise ValueError(
                    f"the server at {client.base_url} refuses the kit's pass-through chat template: start it with "
                    "--trust-request-chat-template (see docs/serving.md)"
                ) from err
            raise
        return client

    def generate(
        self, prompts: Sequence[str], *, image=None, adapter: Path | None = None, sampling: Sampling
    ) -> list[list[Completion]]:
        """Per prompt, `sampling.n` completions; prompt i goes to server `spread(...)[i]`, its n samples together."""
        image = engine_image(image)
        model = self._load(adapter) if adapter is not None else None
        url = png_data_url(image) if image is not None else None
        servers = spread(len(prompts), len(self.clients), self._next)
        self._next = (self._next + len(prompts)) % len(self.clients)

        def one(i: int) -> list[Completion]:
            client = self.clients[servers[i]]
            seed = None if sampling.seed is None else sampling.seed + i * sampling.n
            body = chat_request(prompts[i], url, model or client.model, sampling, seed)
            return parse_choices(client.request("POST", "/chat/completions", body))

        workers = max(1, min(len(prompts), self.max_concurrency))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(prompts))))

    def _load(self, folder: Path) -> str:
        """The name `folder`'s adapter is served under: loaded into every server under a new name when it is a
        new folder (the previous name unloaded), so no server can answer with an older version."""
        if self._adapter is not None and self._adapter[0] == folder:
            return self._adapter[1]
        name = next(self._names)
        for client in self.clients:
            try:
                client.request("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": str(folder)})
            except RuntimeError as err:
                raise ValueError(
                    f"the server at {client.base_url} did not load the adapter {folder} ({err}); it must run with "
                    "--enable-lora and the environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, and read "
                    "this path"
                ) from err
        if self._adapter is not None:
            self._unload(self._adapter[1])
        self._adapter = (folder, name)
        return name

    def _unload(self, name: str) -> None:
        for client in self.clients:
            client.request("POST", "/unload_lora_adapter", {"lora_name": name})

    def close(self) -> None:
        """Unload this run's adapter from the servers (they keep running) and delete its folders."""
        if self._adapter is not None:
            self._unload(self._adapter[1])
            self._adapter = None
        self.adapters.close()
