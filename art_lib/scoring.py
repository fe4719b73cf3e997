"""One definition of accuracy for every backend: completions -> parsed predictions, scores, a Wilson interval.

`score_completions` is what `evaluate` (every `generation.Generator` backend: HF, offline vLLM, servers) and
`client.evaluate_server` call; the benchmark's parser and scorer come from the registry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EvalResult", "wilson_interval", "parse_prediction", "score_completions", "score_outputs"]

# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes out of n trials (n=0 gives the vacuous (0, 1))."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamp: at k=0 / k=n the bounds are exactly 0 / 1 mathematically but may round past them.
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class EvalResult:
    """Per-example rows plus accuracy with its 95% Wilson interval."""

    rows: pd.DataFrame
    accuracy: float
    ci_low: float
    ci_high: float
    n: int
    k: int = 0
    benchmark: str = ""
    label: str = ""
    config: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Flat dict for a results table (one row per run)."""
        return {
            "label": self.label,
            "benchmark": self.benchmark,
            "n": self.n,
            "correct": self.k,
            "accuracy": self.accuracy,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }


# --------------------------------------------------------------------------- #
# Scoring (shared by every backend)
# --------------------------------------------------------------------------- #


def parse_prediction(completion: str, example: dict, benchmark: str) -> Any:
    """What the benchmark's scorer reads from a completion: a number, a letter, or a list of tool calls."""
    from art_lib.registry import get_benchmark

    return get_benchmark(benchmark).parse(completion, example)


def score_completions(
    examples: Sequence[dict],
    completions: Sequence[str],
    benchmark: str,
    *,
    extra: dict[str, Sequence[Any]] | None = None,
    label: str = "",
    config: dict | None = None,
    scorer: Callable | None = None,
) -> EvalResult:
    """Score completions with the benchmark's scorer into per-example rows and a Wilson-interval accuracy.

    `extra` adds per-example columns (e.g. token counts, finish reasons). An example counts as
    correct when its score is 1 (the scorers give 0 or 1; partial credit is kept in `score`).
    """
    import pandas as pd

    from art_lib.rewards import get_scorer

    if len(examples) != len(completions):
        raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
    scorer = scorer or get_scorer(benchmark)
    rows = []
    for i, (ex, comp) in enumerate(zip(examples, completions)):
        comp = comp if isinstance(comp, str) else ("" if comp is None else str(comp))
        score = float(scorer(comp, ex))
        parsed = parse_prediction(comp, ex, benchmark)
        row = {
            "id": ex.get("id", str(i)),
            "prompt": ex["prompt"],
            "completion": comp,
            # Tool calls as JSON text: a tidy, CSV-friendly column of one type.
            "parsed": json.dumps(parsed, ensure_ascii=False) if isinstance(parsed, list) else parsed,
            "answer": ex.get("answer"),
            "score": score,
            "correct": score >= 1.0,
        }
        for name, values in (extra or {}).items():
            row[name] = values[i]
        rows.append(row)
    columns = ["id", "prompt", "completion", "parsed", "answer", "score", "correct", *(extra or {})]
    df = pd.DataFrame(rows, columns=columns)
    n, k = len(df), int(df["correct"].sum()) if len(df) else 0
    lo, hi = wilson_interval(k, n)
    return EvalResult(
        rows=df,
        accuracy=k / n if n else float("nan"),
        ci_low=lo,
        ci_high=hi,
        n=n,
        k=k,
        benchmark=benchmark,
        label=label,
        config=dict(config or {}),
    )


def score_outputs(
    examples: Sequence[dict],
    outs: Sequence[dict],
    benchmark: str,
    *,
    scorer: Callable | None = None,
    label: str = "",
    config: dict | None = None,
) -> EvalResult:
    """Score engine outputs `{"completion", "completion_tokens", "finish_reason"}`, the last two as columns."""
    return score_completions(
        examples,
        [o["completion"] for o in outs],
        benchmark,
        scorer=scorer,
        label=label,
        config=config,
        extra={
            "completion_tokens": [o["completion_tokens"] for o in outs],
            "finish_reason": [o["finish_reason"] for o in outs],
        },
    )
