"""The notebooks, their parameter sets, and what a paper run costs before anything runs.

`notebooks()` lists the kit's notebooks, `load_params` reads `notebooks/params/<stem>.<scale>.yaml`,
`notebook_parameters` reads a notebook's parameters cell (with `ast`, papermill's convention). `plan`
turns them into one row per training arm (steps, generated tokens, peak memory, GPU-hours), from the
parameters and the published model configs only: `python -m art_lib.reproduce paper --plan` prints it.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .cost import TEST_SIZES, Throughput, arm_cost, peak_memory_gb

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The kit's notebooks in run order (quickstart first, figures last)."""
    found = sorted(folder.glob("*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks found in {folder}")
    return found


def scales(folder: Path = ROOT / "notebooks" / "params") -> list[str]:
    """'default' and every suffix of a `<stem>.<scale>.yaml` in notebooks/params."""
    return ["default", *sorted({p.name.split(".")[-2] for p in folder.glob("*.*.yaml")})]


def _nearest(problem: str, name: str, valid: list[str]) -> ValueError:
    """'<problem>; did you mean <nearest>? (valid: ...)'."""
    from .config import nearest

    hint = f"; did you mean {near!r}?" if (near := nearest(name, valid)) else ""
    return ValueError(f"{problem}{hint} (valid: {', '.join(valid)})")


def _stem(name: str, folder: Path) -> str:
    """A notebook's stem from its stem or a path to it (or to its jupytext .py pair) in `folder`."""
    path = Path(name)
    if path.suffix not in (".ipynb", ".py"):
        return name
    if path.parent != Path(".") and path.resolve().parent != folder.resolve() and path.parent != Path(folder.name):
        raise ValueError(f"{name!r} is not in {folder}: reproduce runs the kit's own notebooks (by stem)")
    return path.stem


def select(scale: str, only: list[str] | None = None, overrides: dict | None = None) -> list[tuple[Path, dict | None]]:
    """(notebook, its parameters at `scale`, None when it has no yaml for it) for each notebook `only` names (a stem
    or a path to the notebook; all when empty), in run order. An unknown notebook or scale, a scale that none of
    the chosen notebooks has, or an override that is not a parameter of each of them (`check_overrides`) is a
    ValueError naming the nearest valid name: a typo never runs nothing and passes."""
    found = notebooks()
    stems = [nb.stem for nb in found]
    wanted = {_stem(name, found[0].parent) for name in only or ()}
    unknown = sorted(wanted - set(stems))
    if unknown:
        raise _nearest(f"unknown notebook {unknown[0]!r}", unknown[0], stems)
    if scale not in scales():
        raise _nearest(f"unknown scale {scale!r}", scale, scales())
    chosen = [(nb, load_params(nb.stem, scale)) for nb in found if not wanted or nb.stem in wanted]
    if all(params is None for _, params in chosen):
        names = ", ".join(nb.stem for nb, _ in chosen)
        raise ValueError(f"no notebooks/params/<stem>.{scale}.yaml for {names}: nothing would run")
    for nb, params in chosen:
        if params is not None:
            check_overrides(nb, overrides or {})
    return chosen


def check_overrides(nb: Path, overrides: dict) -> None:
    """Each override names a parameter of the notebook's parameters cell and has its annotated type.

    None (YAML `null`) is accepted for any parameter (many mean "the default" by None). Anything else is a
    ValueError naming notebook, parameter and value (`check_value`).
    """
    defaults, types = notebook_parameters(nb), parameter_types(nb)
    for name, value in overrides.items():
        if name not in defaults:
            raise _nearest(f"{nb.stem} has no parameter {name!r}", name, list(defaults))
        if value is not None:
            check_value(nb.stem, name, value, types.get(name))


#: Count parameters: an int (or each int of a list) below 1 runs nothing or ends in an error far from its cause.
AT_LEAST_ONE = frozenset(
    "n_test n_train steps rl_steps batch_size rl_batch_size num_generations eval_batch_size cpu_threads lora_rank "
    "lora_ranks sizes".split()
)


def check_value(notebook: str, name: str, value, annotation) -> None:
    """`value` has the parameter's annotated type (an int passes for a float; a count is >= 1), else ValueError."""
    if annotation is not None and not _has_type(value, annotation):
        hint = " (YAML reads 1e-2 as text: write 1.0e-2)" if _wants(annotation, float) and _is_number(value) else ""
        raise ValueError(
            f"{notebook}: parameter {name} must be of type {_type_name(annotation)}, got {value!r} "
            f"({type(value).__name__}){hint}"
        )
    counts = value if isinstance(value, list) else [value]
    if name in AT_LEAST_ONE and any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in counts):
        raise ValueError(
            f"{notebook}: parameter {name} counts something and must be >= 1 (or None: all), got {value!r}"
        )


def check_parameters(namespace: dict, stem: str) -> dict:
    """A notebook's setup: its parameters (the annotated names of its parameters cell) after papermill's injection,
    checked: a name papermill injected that the cell does not declare (a typo) and a value of the wrong type are
    ValueErrors naming the nearest parameter / the type. Call it first in the setup cell, before other names are
    set (modules, functions and classes are not parameters). Returns {name: value} of the declared parameters."""
    import types

    declared = namespace.get("__annotations__", {})
    ipython = {"In", "Out", "get_ipython", "exit", "quit", "open", "STEM"}
    unknown = [
        k
        for k, v in namespace.items()
        if k not in declared
        and not k.startswith("_")
        and k not in ipython
        and not isinstance(v, (types.ModuleType, types.FunctionType, type))
        and getattr(v, "__module__", None) != "typing"  # the cell's `from typing import Optional, Union`
    ]
    if unknown:
        raise _nearest(f"{stem} has no parameter {unknown[0]!r}", unknown[0], list(declared))
    for name, annotation in declared.items():
        if namespace[name] is not None:
            check_value(stem, name, namespace[name], annotation)
    return {k: namespace[k] for k in declared}


def parameter_types(nb: Path) -> dict:
    """{name: annotation} of a notebook's parameters cell (`name: type = literal`), as the types Python builds."""
    import typing

    names = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict, "None": None}
    names |= {"Optional": typing.Optional, "Union": typing.Union}
    out = {}
    for node in _parameter_nodes(nb):
        if isinstance(node, ast.AnnAssign):
            out[node.target.id] = eval(
                compile(ast.Expression(node.annotation), "<annotation>", "eval"), {"__builtins__": {}}, names
            )
    return out


def _has_type(value, annotation) -> bool:
    """isinstance for a parameters cell's annotations: int, float, bool, str, None, X | Y, list[X], dict[K, V]."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return value is None
    if args and origin is not list and origin is not dict:  # X | Y
        return any(_has_type(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _has_type(k, args[0]) and _has_type(v, args[1]) for k, v in value.items()
        )
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _wants(annotation, kind) -> bool:
    import typing

    return annotation is kind or kind in typing.get_args(annotation)


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) if isinstance(annotation, type) else str(annotation)


def _is_number(text) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def load_params(stem: str, scale: str) -> dict | None:
    """A notebook's parameter overrides for `scale` (None when it has no such file; {} for 'default')."""
    if scale == "default":
        return {}
    pfile = ROOT / "notebooks" / "params" / f"{stem}.{scale}.yaml"
    return (yaml.safe_load(pfile.read_text()) or {}) if pfile.exists() else None


# --------------------------------------------------------------------------- #
# Plan: what a paper run costs, from its parameters, the published configs and the data (`cost`)
# --------------------------------------------------------------------------- #


def _budget(benchmark: str, params: dict) -> int:
    from .runtime import generation_budget

    return int(params.get("max_new_tokens") or generation_budget(benchmark))


def _n_test(benchmark: str, params: dict) -> int:
    return int(params.get("n_test") or TEST_SIZES.get(benchmark, 0))


def _arm(model, benchmark, method, objective, steps, batch, params, G=None, evals=1, label=None, **extra) -> dict:
    """One arm as `cost` reads it; `extra`: image_size (ART / soft prompt) and lora_rank where the arm sets them."""
    return {
        "arm": label or method,
        "method": method,
        "model": model,
        "benchmark": benchmark,
        "objective": objective,
        "steps": int(steps),
        "batch_size": int(batch),
        "num_generations": int(G or params.get("num_generations", 8)),
        "budget": _budget(benchmark, params),
        "n_test": _n_test(benchmark, params),
        "evals": evals,
        "image_size": int(extra.get("image_size") or params.get("image_size") or 256),
        "lora_rank": int(extra.get("lora_rank") or params.get("lora_rank") or 8),
        "data_dir": params.get("data_dir"),
    }


def plan_arms(stem: str, p: dict) -> list[dict]:
    """The arms (and control evaluations) a notebook runs with parameters `p`, mirroring its loops."""
    arms = []
    ctl = lambda m, b, n=4: _arm(m, b, "controls", "none", 0, 0, p, evals=n)  # noqa: E731
    if stem == "00_quickstart":
        arms += [
            _arm(p["model"], p["benchmark"], p["method"], p["objective"], p["steps"], p["batch_size"], p),
            ctl(p["model"], p["benchmark"]),
        ]
    elif stem == "tab1_model_sizes":
        for m in p["models"]:
            arms.append(ctl(m, p["benchmark"]))
            arms += [
                _arm(m, p["benchmark"], a, p["objective"], p["steps"], p["batch_size"], p)
                for _ in p["seeds"]
                for a in p["methods"]
            ]
    elif stem == "tab2_art_vs_lora":
        for b in p["benchmarks"] + [b for b in p.get("extra_benchmarks", []) if b not in p["benchmarks"]]:
            arms.append(ctl(p["model"], b))
            arms += [
                _arm(p["model"], b, a, "sft", p["steps"], p["batch_size"], p) for _ in p["seeds"] for a in p["methods"]
            ]
        for b in p["rl_benchmarks"]:
            for _ in p["seeds"]:
                for a in p["rl_methods"]:
                    w = p.get("rl_warm_start_steps", 0)
                    if w:
                        arms.append(_arm(p["model"], b, a, "sft", w, p["batch_size"], p, label=f"{a}-warm{w}"))
                        arms.append(
                            _arm(p["model"], b, a, "sft", w, p["batch_size"], p, evals=0, label=f"{a} warm start")
                        )
                    arms.append(_arm(p["model"], b, a, p["rl_objective"], p["rl_steps"], p["rl_batch_size"], p))
    elif stem == "tab3_dimensionality_alignment":
        sft = lambda method, **kw: _arm(p["model"], p["benchmark"], method, "sft", p["steps"], p["batch_size"], p, **kw)  # noqa: E731
        arms += [sft("art", label=f"art-{s}px", image_size=s) for s in p["sizes"]]
        arms += [sft("lora", label=f"lora-r{r}", lora_rank=r) for r in p["lora_ranks"]]
        arms.append(sft("soft_prompt"))
    elif stem == "fig_artworks":
        arms += [_arm(p["model"], t, "art", p["objective"], p["steps"], p["batch_size"], p) for t in p["tasks"]]
    elif stem == "fig_style_tradeoff":
        arms += [
            _arm(p["model"], p["benchmark"], "art", "sft", p["steps"], p["batch_size"], p, label=f"art-style{w:g}")
            for w in p["style_weights"]
        ]
        for m, benches in p["transport_runs"].items():
            for b in benches:
                arms += [
                    _arm(
                        m,
                        b,
                        "art",
                        "sft",
                        p["steps"],
                        p["batch_size"],
                        p,
                        evals=1 + len(p["transports"]),
                        label=f"art-{k}",
                    )
                    for k in ("plain", "robust")
                ]
    else:
        raise ValueError(f"no plan for notebook {stem!r}")
    return arms


def plan(
    scale: str = "paper",
    only: list[str] | None = None,
    tp: Throughput | None = None,
    overrides: dict | None = None,
    transform=None,
) -> pd.DataFrame:
    """One row per arm of every notebook at `scale` (`overrides` on top; `transform(params)`, e.g. the dry run's
    stand-in, last): steps, tokens, peak memory and upper bounds of GPU-hours with HF and with vLLM generation."""
    import pandas as pd

    from .prompt_lengths import measure

    tp = tp or Throughput()
    rows, lengths, fractions = [], {}, [0.0]
    for nb, p in select(scale, only, overrides):
        if p is None:
            continue
        p = notebook_parameters(nb) | p | (overrides or {})
        p = transform(p) if transform else p
        fractions.append(float(p.get("vllm_memory_fraction") or 0.0))
        for arm in plan_arms(nb.stem, p):
            c = arm_cost(arm, p, tp)
            lengths[arm["benchmark"]] = measure(arm["benchmark"], arm["model"], arm["data_dir"]).describe()
            rows.append(
                {
                    "notebook": nb.stem,
                    **{k: arm[k] for k in ("model", "benchmark", "arm", "objective", "steps")},
                    "prompts_per_step": arm["batch_size"],
                    "generations": arm["num_generations"] if arm["objective"] not in ("sft", "none") else 0,
                    "resample_rounds": c["resample_rounds"],
                    "budget": arm["budget"],
                    "prompt_tokens": c["prompt_tokens"],
                    "eval_examples": arm["n_test"] * arm["evals"],
                    "eval_batch": int(p.get("eval_batch_size") or 8),
                    "micro_batch": int(p.get("micro_batch_size") or arm["batch_size"] * arm["num_generations"]),
                    "grad_ckpt": bool(p.get("gradient_checkpointing")),
                    "generated_tokens": c["generated_tokens"],
                    "peak_gpu_gb": peak_memory_gb(arm, p, tp),
                    "gpu_hours_hf": _hours_up(c["seconds_hf"]),
                    "gpu_hours_vllm": _hours_up(c["seconds_vllm"]),
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["prompt_lengths"] = lengths
    df.attrs["vllm_memory_fraction"] = max(fractions)
    return df


def _hours_up(seconds: float) -> float:
    """Seconds as hours rounded UP to 1/1000 (a bound stays a bound when printed)."""
    return math.ceil(seconds / 3.6) / 1000


def notebook_parameters(nb: Path) -> dict:
    """A notebook's parameters-cell defaults, read with `ast` (no execution).

    The cell tagged `parameters` (the one papermill injects after) must hold only `name: type = literal` statements;
    anything else raises `ValueError`, so a default that is not a plain value cannot slip past `--plan` and
    the tests.
    """
    out = {}
    for node in _parameter_nodes(nb):
        try:
            out[_target(node)] = ast.literal_eval(node.value)
        except ValueError as e:
            raise ValueError(f"{Path(nb).name}: parameters cell line {node.lineno}: {e}") from None
    return out


def _target(node) -> str:
    return node.target.id if isinstance(node, ast.AnnAssign) else node.targets[0].id


def _parameter_nodes(nb: Path) -> list:
    """The statements of the cell tagged `parameters`: each `name: type = literal` (or `name = literal`)."""
    import json

    cells = json.loads(Path(nb).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{Path(nb).name}: {len(tagged)} cells tagged 'parameters' (want exactly 1)")
    nodes = []
    for node in ast.parse("".join(tagged[0]["source"])).body:
        if isinstance(node, ast.ImportFrom) and node.module == "typing":
            continue  # the names its annotations use (papermill cannot read `X | None`, it reads `Optional[X]`)
        plain = isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        annotated = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None
        if not (plain or annotated):
            raise ValueError(f"{Path(nb).name}: parameters cell line {node.lineno} is not `name: type = literal`")
        nodes.append(node)
    return nodes
