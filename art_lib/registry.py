"""One registry of benchmarks and model-name schemes.

A benchmark is one `Benchmark` object: how to load its examples, how much a model may generate for it,
what an SFT target looks like, how a completion is parsed and scored. `data.load_benchmark`,
`rewards.get_scorer`, `scoring.parse_prediction` and the trainer all look names up here, so a user
benchmark registered with `register_benchmark` works everywhere a built-in one does.

A model-name scheme maps names such as `"<scheme>:<spec>"` to a loadable checkpoint folder
(`register_model_scheme`); names without a registered scheme are hub ids or folders.

The built-in benchmarks (`art_lib.tasks`) and the toy world (`art_lib.toy`) register themselves when
imported; the first lookup imports them. Only that deferred import reaches into the kit: at module level
this module imports nothing from `art_lib`, so every other module may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Benchmark",
    "ModelScheme",
    "register_benchmark",
    "unregister_benchmark",
    "get_benchmark",
    "benchmark_names",
    "register_model_scheme",
    "resolve_model",
    "model_scheme",
    "canonical_name",
    "default_sft_target",
]


def default_sft_target(example: dict) -> str:
    """`meta["target"]` when the loader gives one, else `Answer: <answer>`."""
    meta = example.get("meta") or {}
    return meta["target"] if "target" in meta else f"Answer: {example['answer']}"


@dataclass(frozen=True)
class Benchmark:
    """Everything the kit needs to know about one benchmark."""

    name: str
    load: Callable[..., list[dict]]  # (split=, limit=, seed=, source=, ...) -> examples
    score: Callable[[Any, dict], float]  # (completion, example) -> score in [0, 1]; never raises on output
    parse: Callable[[Any, dict], Any]  # (completion, example) -> what `score` reads (number, letter, calls)
    max_new_tokens: int = 512  # generation budget for evaluation and RL rollouts
    sft_target: Callable[[dict], str] = default_sft_target  # the completion SFT trains toward
    aliases: tuple[str, ...] = field(default=())
    data: tuple[str, str] | None = None  # (sub-folder of a notebook's `data_dir`, what to put there); None: no files


@dataclass(frozen=True)
class ModelScheme:
    """How `"<scheme>:<spec>"` model names resolve to a checkpoint folder (and what to record about it)."""

    scheme: str
    resolve: Callable[[str], str]  # spec -> path of a checkpoint folder
    info: Callable[[str], dict] | None = None  # spec -> identity to record in run_info.json (hashes, ...)


_BENCHMARKS: dict[str, Benchmark] = {}
_ALIASES: dict[str, str] = {}
_SCHEMES: dict[str, ModelScheme] = {}


def canonical_name(name: Any) -> str:
    """Lower case, `-` -> `_`, aliases resolved."""
    key = str(name).strip().lower().replace("-", "_")
    return _ALIASES.get(key, key)


def register_benchmark(benchmark: Benchmark, *, replace: bool = False) -> Benchmark:
    """Add a benchmark (and its aliases); an existing name needs `replace=True`."""
    key = canonical_name(benchmark.name)
    if key in _BENCHMARKS and not replace:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered; pass replace=True to override")
    _BENCHMARKS[key] = benchmark
    for alias in benchmark.aliases:
        _ALIASES[str(alias).strip().lower().replace("-", "_")] = key
    return benchmark


def unregister_benchmark(name: str) -> Benchmark:
    """Remove a registered benchmark and its aliases (and return it); unknown -> ValueError."""
    benchmark = get_benchmark(name)
    key = canonical_name(benchmark.name)
    del _BENCHMARKS[key]
    for alias in [a for a, k in _ALIASES.items() if k == key]:
        del _ALIASES[alias]
    return benchmark


def register_model_scheme(scheme: ModelScheme, *, replace: bool = False) -> ModelScheme:
    """Add a model-name scheme (`"toy"` for `"toy:base"`, say)."""
    if scheme.scheme in _SCHEMES and not replace:
        raise ValueError(f"model scheme {scheme.scheme!r} is already registered; pass replace=True to override")
    _SCHEMES[scheme.scheme] = scheme
    return scheme


def _ensure_loaded() -> None:
    """Import the built-in benchmarks, then the toy world (which reuses their scorers); each registers on import.

    Deferred to the first lookup, not at the top of this module: those modules use the kit (data, rewards,
    models), which looks names up here. tests/test_layout.py allows exactly this edge and no other.
    """
    from . import tasks, toy  # noqa: F401  (imported for their registrations; a no-op once imported)


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark called `name` (case and `-`/`_` insensitive); unknown -> ValueError."""
    _ensure_loaded()
    key = canonical_name(name)
    if key not in _BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; valid names: {', '.join(benchmark_names())}")
    return _BENCHMARKS[key]


def benchmark_names() -> tuple[str, ...]:
    """Every registered benchmark name, in registration order."""
    _ensure_loaded()
    return tuple(_BENCHMARKS)


def model_scheme(model: str) -> tuple[ModelScheme, str] | None:
    """`(scheme, spec)` when `model` is `"<registered scheme>:<spec>"`, else None."""
    _ensure_loaded()
    scheme, sep, spec = str(model).partition(":")
    return (_SCHEMES[scheme], spec) if sep and scheme in _SCHEMES else None


def resolve_model(model: str) -> tuple[str, str]:
    """(path or hub id to load, label for tables): registered schemes resolve, anything else is itself."""
    found = model_scheme(model)
    return (found[0].resolve(found[1]), model) if found else (model, model)
