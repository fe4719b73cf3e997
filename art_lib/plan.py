"""The notebooks, their parameter sets, and what a paper run costs before anything runs.

`notebooks()` lists the kit's notebooks, `load_params` reads `notebooks/params/<stem>.<scale>.yaml`,
`notebook_parameters` reads a notebook's parameters cell (with `ast`, papermill's convention). `plan`
turns them into one row per training arm (steps, generated tokens, peak memory, GPU-hours), from the
parameters and the published model configs only: `python -m art_lib.reproduce paper --plan` prints it.
"""

from __future__ import annotations

import ast
import difflib
import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

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
    near = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else ""
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
    """Each override names a parameter of the notebook's parameters cell and has its default's type.

    The type is the default's where that is unambiguous (int, float, bool, str, list, dict; an int passes for a
    float); a None default takes anything, and None (YAML `null`) is accepted for any parameter (many mean "the
    default" by None). Anything else is a ValueError naming notebook, parameter and value.
    """
    defaults = notebook_parameters(nb)
    for name, value in overrides.items():
        if name not in defaults:
            raise _nearest(f"{nb.stem} has no parameter {name!r}", name, list(defaults))
        want = type(defaults[name])
        if value is None or want not in (bool, int, float, str, list, dict):
            continue  # None, or a default whose type says nothing (None, a tuple or set literal)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else type(value) is want
        if not ok:
            hint = " (YAML reads 1e-2 as text: write 1.0e-2)" if want is float and _is_number(value) else ""
            raise ValueError(
                f"{nb.stem}: parameter {name} must be of type {want.__name__} (its default is {defaults[name]!r}), "
                f"got {value!r} ({type(value).__name__}){hint}"
            )


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
# Plan: what a paper run costs, from its parameters and the published configs only
# --------------------------------------------------------------------------- #


@dataclass
class Throughput:
    """Assumed speeds of one GPU (H100/H200 class, bfloat16). Assumptions, not measurements: scale the hours."""

    gen_tokens_per_s_1b: float = 2500.0  # sampled tokens/s, batched generation (>= 64 rows), 1B model (~1/params)
    train_tflops: float = 250.0  # achieved bfloat16 TFLOP/s of forward + backward (about 25-35% of an H100's peak)
    prompt_tokens: int = 300  # chat template + question + 64 visual tokens of a 256x256 artwork
    sft_target_tokens: int = 200  # a GSM8K worked solution + "Answer: N" (tool calls are shorter)


#: Test-split sizes when n_test is None (ToolMind: 10% of all 368,611 rows; rows without a call are dropped).
TEST_SIZES = {"gsm8k": 1319, "svamp": 300, "gpqa": 198, "toolmind": 36861}


def _size(model: str) -> tuple[str, str]:
    """'Qwen/Qwen3.5-0.8B' -> ('qwen3_5', '0.8B'): the published config shipped in art_lib/assets."""
    name = Path(str(model)).name
    if not name.lower().startswith("qwen3.5-"):
        raise ValueError(f"--plan knows the Qwen3.5 configs in art_lib/assets; cannot size {model!r}")
    return "qwen3_5", name.split("-", 1)[1]


def _budget(benchmark: str, params: dict) -> int:
    from .experiments import generation_budget

    return int(params.get("max_new_tokens") or generation_budget(benchmark))


def _n_test(benchmark: str, params: dict) -> int:
    return int(params.get("n_test") or TEST_SIZES.get(benchmark, 0))


def _arm(model, benchmark, method, objective, steps, batch, params, G=None, evals=1, label=None) -> dict:
    return {
        "arm": label or method,
        "model": model,
        "benchmark": benchmark,
        "objective": objective,
        "steps": int(steps),
        "batch_size": int(batch),
        "num_generations": int(G or params.get("num_generations", 8)),
        "budget": _budget(benchmark, params),
        "n_test": _n_test(benchmark, params),
        "evals": evals,
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
        for b in p["benchmarks"]:
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
        arms += [
            _arm(p["model"], p["benchmark"], f"art-{s}px", "sft", p["steps"], p["batch_size"], p) for s in p["sizes"]
        ]
        arms += [
            _arm(p["model"], p["benchmark"], f"lora-r{r}", "sft", p["steps"], p["batch_size"], p)
            for r in p["lora_ranks"]
        ]
        arms.append(_arm(p["model"], p["benchmark"], "soft_prompt", "sft", p["steps"], p["batch_size"], p))
    elif stem == "fig_artworks":
        arms += [_arm(p["model"], t, "art", p["objective"], p["steps"], p["batch_size"], p) for t in p["tasks"]]
    elif stem == "fig_style_tradeoff":
        arms += [
            _arm(p["model"], p["benchmark"], f"art-style{w:g}", "sft", p["steps"], p["batch_size"], p)
            for w in p["style_weights"]
        ]
        for m, benches in p["transport_runs"].items():
            for b in benches:
                arms += [
                    _arm(m, b, f"art-{k}", "sft", p["steps"], p["batch_size"], p, evals=1 + len(p["transports"]))
                    for k in ("plain", "robust")
                ]
    else:
        raise ValueError(f"no plan for notebook {stem!r}")
    return arms


@functools.cache
def _text_config(model: str):
    from .models import real_config

    return real_config(*_size(model)).text_config


@functools.cache
def _parameters(model: str) -> int:
    from .models import meta_model

    return sum(p.numel() for p in meta_model(*_size(model)).parameters())


def peak_memory_gb(arm: dict, p: dict, tp: Throughput) -> float:
    """Estimated peak GPU memory of one arm in bfloat16 (analytic; see README for what it includes)."""
    from .forward import LOGIT_CHUNK_TOKENS

    c = _text_config(arm["model"])
    n, h, layers, vocab = _parameters(arm["model"]), c.hidden_size, c.num_hidden_layers, c.vocab_size
    weights = 2 * n
    full = sum(t == "full_attention" for t in c.layer_types)
    linear = layers - full
    rl = arm["objective"] not in ("sft", "none")
    completion = arm["budget"] if rl else tp.sft_target_tokens
    T = tp.prompt_tokens + completion
    # Sampling: KV cache of the full-attention layers, fixed-size state of the linear ones, last-step logits.
    prompts_gen = min(arm["batch_size"], int(p.get("generation_batch_size") or arm["batch_size"]))
    rows_gen = prompts_gen * arm["num_generations"] if rl else int(p.get("eval_batch_size") or 8)
    kv = rows_gen * (tp.prompt_tokens + arm["budget"]) * full * 2 * c.num_key_value_heads * c.head_dim * 2
    state = rows_gen * linear * c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim * 4
    gen = kv + state + rows_gen * vocab * 4
    # Training: activations per layer (~34 bytes x hidden per token without recomputation, 2 with), and
    # the vocabulary projection of one chunk of completion tokens (bfloat16 logits, float32 log-softmax and
    # gradient: 2 + 4 + 4 bytes), as the trainer projects them (`forward.LOGIT_CHUNK_TOKENS` at a time).
    rows = arm["batch_size"] * (arm["num_generations"] if rl else 1)
    micro = min(rows, int(p.get("micro_batch_size") or rows))
    per_token = (2 * layers + 34) if p.get("gradient_checkpointing") else 34 * layers
    chunk = min(micro * completion, LOGIT_CHUNK_TOKENS)
    train = micro * T * h * per_token + chunk * vocab * 10 if arm["steps"] else 0
    return round((weights + max(gen, train)) / 1e9 + 1.0, 1)  # + ~1 GB CUDA context and allocator slack


def gpu_hours(arm: dict, p: dict, tp: Throughput) -> tuple[float, int]:
    """(estimated GPU-hours, generated tokens) of one arm: sampling, training FLOPs and evaluation."""
    n = _parameters(arm["model"])
    rl = arm["objective"] not in ("sft", "none")
    gen_rate = tp.gen_tokens_per_s_1b * 1e9 / n
    gen_tokens = arm["evals"] * arm["n_test"] * arm["budget"]  # greedy evaluation, at most the budget each
    flops = 0.0
    if rl:
        rows = arm["steps"] * arm["batch_size"] * arm["num_generations"]
        gen_tokens += rows * arm["budget"]  # rollouts (DAPO's extra resample rounds not counted)
        flops += rows * (tp.prompt_tokens + arm["budget"]) * 8 * n  # old log-probs (2N) + loss fwd/bwd (6N)
    elif arm["steps"]:
        flops += arm["steps"] * arm["batch_size"] * (tp.prompt_tokens + tp.sft_target_tokens) * 6 * n
    if p.get("gradient_checkpointing"):
        flops *= 8 / 6  # one more forward
    seconds = gen_tokens / gen_rate + flops / (tp.train_tflops * 1e12)
    return seconds / 3600, gen_tokens


def plan(
    scale: str = "paper", only: list[str] | None = None, tp: Throughput | None = None, overrides: dict | None = None
) -> pd.DataFrame:
    """One row per arm of every notebook at `scale` (`overrides` on top): steps, tokens, peak memory, GPU-hours."""
    import pandas as pd

    tp = tp or Throughput()
    rows = []
    for nb, p in select(scale, only, overrides):
        if p is None:
            continue
        p = notebook_parameters(nb) | p | (overrides or {})
        for arm in plan_arms(nb.stem, p):
            hours, tokens = gpu_hours(arm, p, tp)
            rows.append(
                {
                    "notebook": nb.stem,
                    **{k: arm[k] for k in ("model", "benchmark", "arm", "objective", "steps")},
                    "prompts_per_step": arm["batch_size"],
                    "generations": arm["num_generations"] if arm["objective"] not in ("sft", "none") else 0,
                    "budget": arm["budget"],
                    "eval_examples": arm["n_test"] * arm["evals"],
                    "generated_tokens": tokens,
                    "peak_gpu_gb": peak_memory_gb(arm, p, tp),
                    "gpu_hours": round(hours, 2),
                }
            )
    return pd.DataFrame(rows)


def notebook_parameters(nb: Path) -> dict:
    """A notebook's parameters-cell defaults, read with `ast` (no execution).

    The cell tagged `parameters` (the one papermill injects after) must hold only `name = literal` statements;
    anything else raises `ValueError`, so a default that is not a plain value cannot slip past `--plan` and
    the tests.
    """
    import json

    cells = json.loads(Path(nb).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{Path(nb).name}: {len(tagged)} cells tagged 'parameters' (want exactly 1)")
    src = "".join(tagged[0]["source"])
    out = {}
    for node in ast.parse(src).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{Path(nb).name}: parameters cell line {node.lineno} is not `name = literal`")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as e:
            raise ValueError(f"{Path(nb).name}: parameters cell line {node.lineno}: {e}") from None
    return out


def print_plan(df, tp: Throughput) -> None:
    """The plan as text: per arm, per notebook totals, and the assumptions behind the estimates."""
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        for stem, g in df.groupby("notebook", sort=False):
            print(
                f"\n== {stem}: {len(g)} arms, {g.steps.sum()} steps, {g.generated_tokens.sum() / 1e6:.1f}M generated "
                f"tokens, peak {g.peak_gpu_gb.max():.0f} GB, ~{g.gpu_hours.sum():.1f} GPU-hours"
            )
            print(g.drop(columns="notebook").to_string(index=False))
    print(
        f"\nTotal: ~{df.gpu_hours.sum():.0f} GPU-hours, {df.generated_tokens.sum() / 1e9:.2f}B generated tokens, "
        f"peak {df.peak_gpu_gb.max():.0f} GB on one GPU."
    )
    print(
        "Assumptions (estimates, not measurements):",
        ", ".join(f"{k}={v}" for k, v in asdict(tp).items()),
        "| every completion and evaluation answer counted at its full budget (an upper bound); DAPO resample"
        " rounds not counted; memory = bfloat16 weights + the larger of sampling (KV cache, linear-attention"
        " state) and one training micro-batch (activations, one chunk of vocabulary logits).",
    )
