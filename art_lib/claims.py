"""What each notebook's table should show on the toy world: statements with thresholds a real regression violates.

A notebook prints these (`results.print_checks`) in its CI-checked cell, so the CI fails when one stops
holding; the tests run them on doctored copies of the committed tables to show that they can. Each function
takes the notebook's table (the rows it writes to table.csv) and returns {statement: holds}. The thresholds
are margins only the toy world's known answers justify (a trained arm scores 0.95-1.00 there, a control
0.00); paper-scale runs are checked by `results.table_checks` instead.
"""

from __future__ import annotations

import pandas as pd

TRAINED_MIN = 0.9  # a trained arm on a task the toy model reads from a picture (0.95-1.00 today)
CONTROL_MAX = 0.1  # any control: text only, seed icon, noise, random text (0.00 today)
ROUND_TRIP_MAX = 1e-4  # |loss(8-bit PNG) - loss(float pixels)| (< 2e-7 today)
STYLED_SSIM_MIN = 0.9  # SSIM of a style-regularised artwork (weight > 0) to its seed (0.98 today)
UNSTYLED_SSIM_MAX = 0.6  # SSIM of the unregularised artwork to its seed (0.33 today): style weights matter
ROBUST_MIN = 0.8  # a robust (EOT) artwork on the texture toy after any re-encoding (0.90-1.00 today)
JPEG_GAIN_MIN = 0.2  # texture toy, jpeg75: robust minus plain, mean over benchmarks (0.47 today)
NO_LOSS = 0.05  # robust vs plain, RL arm vs its warm start: "no loss" allows two of 40 test examples
MUL_MIN = 0.8  # an SFT arm on toy_mul, never asked through a picture in pretraining (0.95-1.00 today)
#: Table 2 with a bfloat16 frozen model (the table's `dtype` column): measured at 1 thread, LoRA toy_sub 0.85 and
#: ART toy_mul 0.675 (float32: 1.00 and 0.925), so its SFT floors are these instead of TRAINED_MIN and MUL_MIN.
BF16_TRAINED_MIN, BF16_MUL_MIN = 0.8, 0.6
RL_GAIN = {"art": 0.5}  # RL over its own warm start per method (ART: 0.00 -> 1.00 today); others: >= -NO_LOSS


def _acc(table: pd.DataFrame, **cols) -> pd.Series:
    hit = pd.Series(True, index=table.index)
    for k, v in cols.items():
        hit &= table[k] == v
    return table.loc[hit, "accuracy"]


def _one(table: pd.DataFrame, **cols) -> float:
    """The accuracy of the one arm with these column values (NaN if absent, so every statement on it fails)."""
    acc = _acc(table, **cols)
    return float(acc.mean()) if len(acc) else float("nan")


def _controls(table: pd.DataFrame, label: str = "") -> dict[str, bool]:
    out = {}
    for b, g in table[table.method.str.startswith("control:")].groupby("benchmark", sort=False):
        out[f"{label}{b}: every control scores <= {CONTROL_MAX:g}"] = bool((g.accuracy <= CONTROL_MAX).all())
    return out


def quickstart(table: pd.DataFrame, method: str, objective: str) -> dict[str, bool]:
    """00_quickstart: the trained arm reaches TRAINED_MIN, every control stays at or below CONTROL_MAX."""
    acc = _one(table, method=method, objective=objective)
    return {f"{method}/{objective} scores >= {TRAINED_MIN:g}": acc >= TRAINED_MIN} | _controls(table)


def artworks(table: pd.DataFrame, tasks: list[str]) -> dict[str, bool]:
    """fig_artworks: each task's artwork reaches TRAINED_MIN."""
    return {f"{t}: the artwork scores >= {TRAINED_MIN:g}": _one(table, benchmark=t) >= TRAINED_MIN for t in tasks}


def model_sizes(table: pd.DataFrame, methods: list[str]) -> dict[str, bool]:
    """tab1: at every size each trained arm reaches TRAINED_MIN and the controls stay at or below CONTROL_MAX."""
    out = {}
    for m, g in table.groupby("model", sort=False):
        for method in methods:
            out[f"{m}: {method} scores >= {TRAINED_MIN:g}"] = _one(g, method=method) >= TRAINED_MIN
        out |= _controls(g, f"{m} ")
    return out


def art_vs_lora(
    table: pd.DataFrame,
    benchmarks: list[str],
    methods: list[str],
    rl_benchmarks: list[str],
    rl_methods: list[str],
    rl_objective: str,
    warm_start_steps: int,
) -> dict[str, bool]:
    """tab2: every SFT arm reaches TRAINED_MIN (MUL_MIN on toy_mul; in bfloat16 the BF16_ floors), every control
    stays at or below CONTROL_MAX, and every RL arm ends at least RL_GAIN[method] above its own warm start (the
    `<method>-warm<N>` row; the seed-icon control when there is no warm start), or no more than NO_LOSS below it."""
    out = _controls(table)
    bf16 = bool((table["dtype"] == "bfloat16").any())
    trained_min, mul_min = (BF16_TRAINED_MIN, BF16_MUL_MIN) if bf16 else (TRAINED_MIN, MUL_MIN)
    for b in benchmarks:
        floor = mul_min if b == "toy_mul" else trained_min
        for m in methods:
            out[f"{b}: {m}/sft scores >= {floor:g}"] = _one(table, benchmark=b, method=m, objective="sft") >= floor
    for b in rl_benchmarks:
        for m in rl_methods:
            rl = _one(table, benchmark=b, method=m, objective=rl_objective)
            start = f"{m}-warm{warm_start_steps}" if warm_start_steps else "control:seed"
            gain = RL_GAIN.get(m, -NO_LOSS)
            what = f"gains >= {gain:g} over" if gain > 0 else f"loses <= {-gain:g} against"
            out[f"{b}: {m}/{rl_objective} {what} its warm start ({start})"] = (
                rl >= _one(table, benchmark=b, method=start) + gain
            )
    return out


def alignment(table: pd.DataFrame) -> dict[str, bool]:
    """tab3: every arm (each ART size, LoRA rank, the soft prompt) reaches TRAINED_MIN; the 8-bit PNG round trip
    changes the loss by less than ROUND_TRIP_MAX; the processor feeds aligned sizes unchanged, resizes the others."""
    art = table[table.method.str.startswith("art-")]
    aligned = art[art.aligned.astype(bool)]
    fed = art.processor_feeds == art["size"].map(lambda s: f"{int(s)}x{int(s)}")
    out = {f"{m} scores >= {TRAINED_MIN:g}": _one(table, method=m) >= TRAINED_MIN for m in table.method}
    change = (aligned.loss_png - aligned.loss_float).abs()
    return out | {
        f"the 8-bit PNG round trip changes the loss by < {ROUND_TRIP_MAX:g}": bool(
            len(aligned) and (change < ROUND_TRIP_MAX).all()
        ),
        "the processor feeds aligned sizes unchanged and resizes the others": bool(
            (fed == art.aligned.astype(bool)).all()
        ),
    }


def style_tradeoff(table: pd.DataFrame) -> dict[str, bool]:
    """fig_style_tradeoff (a): style weights move the artwork towards its seed without costing accuracy;
    (b) which re-encodings the plain and robust artworks survive, on the colour-glyph toy and the texture toy."""
    st = table[table.experiment == "style"].sort_values("style_weight")
    out = {
        f"style weight {w:g}: the artwork scores >= {TRAINED_MIN:g}": a >= TRAINED_MIN
        for w, a in zip(st.style_weight, st.accuracy)
    }
    for w, s in zip(st.style_weight, st.ssim_to_seed):
        out[
            f"style weight {w:g}: SSIM to the seed "
            + (f">= {STYLED_SSIM_MIN:g}" if w > 0 else f"<= {UNSTYLED_SSIM_MAX:g}")
        ] = s >= STYLED_SSIM_MIN if w > 0 else s <= UNSTYLED_SSIM_MAX
    return out | _transport(table[table.experiment == "transport"])


def _transport(tr: pd.DataFrame) -> dict[str, bool]:
    if not len(tr):
        return {}
    out = {}
    acc = tr.pivot_table(index=["model", "benchmark", "transport"], columns="training", values="accuracy")
    for m, g in acc.groupby(level="model", sort=False):
        if m.endswith("-texture"):  # a tower that reads fine detail: JPEG breaks plain artworks, EOT repairs them
            j75 = g.xs("jpeg75", level="transport")
            out[f"{m}: with no re-encoding every artwork scores >= {TRAINED_MIN:g}"] = bool(
                (g.xs("none", level="transport") >= TRAINED_MIN).all(axis=None)
            )
            out[f"{m}: the robust artworks score >= {ROBUST_MIN:g} after every re-encoding"] = bool(
                (g["robust"] >= ROBUST_MIN).all()
            )
            out[f"{m}: jpeg75 costs the plain artworks >= {JPEG_GAIN_MIN:g} (mean over benchmarks)"] = bool(
                g.xs("none", level="transport")["plain"].mean() - j75["plain"].mean() >= JPEG_GAIN_MIN
            )
            out[f"{m}, jpeg75: robust beats plain by >= {JPEG_GAIN_MIN:g} (mean over benchmarks)"] = bool(
                j75["robust"].mean() - j75["plain"].mean() >= JPEG_GAIN_MIN
            )
        else:  # colour glyphs: every re-encoding keeps what both artworks carry
            out[f"{m}: plain and robust artworks score >= {TRAINED_MIN:g} after every re-encoding"] = bool(
                (g >= TRAINED_MIN).all(axis=None)
            )
    for (m, b), r in acc.xs("jpeg75", level="transport").iterrows():
        out[f"{m} {b}, jpeg75: the robust artwork loses <= {NO_LOSS:g} against the plain one"] = bool(
            r["robust"] >= r["plain"] - NO_LOSS
        )
    return out
