"""The notebooks' statements (`claims`, `results.table_checks`) hold on the committed tables and fail on doctored
copies of them: each regression below must turn at least one statement into `[does not hold]`."""

import json
from pathlib import Path

import pandas as pd
import pytest

from art_lib import claims
from art_lib.results import print_checks, table_checks
from art_lib.scoring import wilson_interval

RESULTS = Path(__file__).resolve().parent.parent / "results"


def committed(stem: str) -> tuple[pd.DataFrame, dict]:
    folder = RESULTS / stem
    return pd.read_csv(folder / "table.csv"), json.loads((folder / "run_info.json").read_text())["parameters"]


def tab2(table, p):
    return claims.art_vs_lora(
        table, p["benchmarks"], p["methods"], p["rl_benchmarks"], p["rl_methods"], p["rl_objective"],
        p["rl_warm_start_steps"],
    )  # fmt: skip


#: stem -> the notebook's own call of its statements, with the parameters its committed run used.
STATEMENTS = {
    "00_quickstart": lambda t, p: claims.quickstart(t, p["method"], p["objective"]),
    "fig_artworks": lambda t, p: claims.artworks(t, list(p["tasks"])),
    "fig_style_tradeoff": lambda t, p: claims.style_tradeoff(t),
    "tab1_model_sizes": lambda t, p: claims.model_sizes(t, p["methods"]),
    "tab2_art_vs_lora": tab2,
    "tab3_dimensionality_alignment": lambda t, p: claims.alignment(t),
}


QS, ARTWORKS, STYLE = "00_quickstart", "fig_artworks", "fig_style_tradeoff"
T1, T2, T3 = "tab1_model_sizes", "tab2_art_vs_lora", "tab3_dimensionality_alignment"
SFT_ARMS = "art|lora|soft_prompt"


def _set(table, value, column="accuracy", **where):
    t = table.copy()
    hit = pd.Series(True, index=t.index)
    for k, v in where.items():
        hit &= t[k].astype(str).str.fullmatch(v)
    assert hit.any(), where  # a doctoring that matches no row would prove nothing
    t.loc[hit, column] = value
    if column == "accuracy":  # keep each row consistent: its 95% interval is that of the new accuracy
        for i in t.index[hit]:
            n = int(t.at[i, "n_test"])
            t.loc[i, ["ci_low", "ci_high"]] = wilson_interval(round(t.at[i, "accuracy"] * n), n)
    return t


def png_loss(table, method, change):
    """The table with `method`'s loss through the 8-bit PNG `change` above its loss from the float pixels."""
    return _set(table, table.loss_float + change, "loss_png", method=method)


#: (stem, what a regression looks like, the doctored table)
DOCTORED = [
    (QS, "the trained arm at 0.5", lambda t: _set(t, 0.5, method="art")),
    (QS, "a control at 0.5", lambda t: _set(t, 0.5, method="control:noise")),
    (ARTWORKS, "one artwork at 0.6", lambda t: _set(t, 0.6, benchmark="toy_sub")),
    (T1, "LoRA on toy:large at 0.5", lambda t: _set(t, 0.5, model="toy:large", method="lora")),
    (T1, "a control at 0.3", lambda t: _set(t, 0.3, model="toy:small", method="control:seed")),
    (T2, "every SFT arm at 0.50", lambda t: _set(t, 0.5, method=SFT_ARMS, objective="sft")),
    (T2, "every SFT arm at 0.30", lambda t: _set(t, 0.3, method=SFT_ARMS, objective="sft")),
    (T2, "one SFT arm at 0.8", lambda t: _set(t, 0.8, benchmark="toy_max", method="soft_prompt")),
    (T2, "the toy_mul ART arm at 0.3", lambda t: _set(t, 0.3, benchmark="toy_mul", method="art")),
    (T2, "a control at 0.5", lambda t: _set(t, 0.5, benchmark="toy_sub", method="control:noise")),
    (T2, "LoRA DAPO at 0.40", lambda t: _set(t, 0.4, method="lora", objective="dapo")),
    (T2, "ART DAPO no better than its warm start", lambda t: _set(t, 0.0, method="art", objective="dapo")),
    (T2, "the RL arms missing", lambda t: t[t.objective != "dapo"]),
    (T3, "round trip 0.01", lambda t: png_loss(t, "art-64px", 0.01)),
    (T3, "round trip 2e-4", lambda t: png_loss(t, "art-96px", 2e-4)),
    (T3, "a non-aligned size at 0.5", lambda t: _set(t, 0.5, method="art-100px")),
    (T3, "LoRA rank 1 at 0.5", lambda t: _set(t, 0.5, method="lora-r1")),
    (T3, "the processor resizes 64px", lambda t: _set(t, "32x32", "processor_feeds", method="art-64px")),
    (STYLE, "style weight 10 at 0.5", lambda t: _set(t, 0.5, experiment="style", style_weight="10.0")),
    (STYLE, "weight 1 no closer to the seed", lambda t: _set(t, 0.4, "ssim_to_seed", style_weight="1.0")),
    (STYLE, "robust texture artwork broken by jpeg75",
     lambda t: _set(t, 0.3, model="toy:base-texture", benchmark="toy_sub", training="robust", transport="jpeg75")),
    (STYLE, "EOT gains nothing",
     lambda t: _set(t, 1.0, model="toy:base-texture", training="plain")),
    (STYLE, "the colour-glyph artwork broken by palette",
     lambda t: _set(t, 0.5, model="toy:base", training="plain", transport="palette")),
]  # fmt: skip


@pytest.mark.parametrize("stem", STATEMENTS)
def test_every_statement_holds_on_the_committed_table(stem):
    table, params = committed(stem)
    checks = STATEMENTS[stem](table, params)
    assert checks and all(checks.values()), [k for k, ok in checks.items() if not ok]


@pytest.mark.parametrize("stem, regression, doctor", DOCTORED, ids=[f"{s}: {r}" for s, r, _ in DOCTORED])
def test_a_doctored_table_makes_a_statement_fail(stem, regression, doctor, capsys):
    table, params = committed(stem)
    print_checks(STATEMENTS[stem](doctor(table), params))
    assert "[does not hold]" in capsys.readouterr().out, regression


PAPER_EXPECTED = {"tab2_art_vs_lora": [{"method": "art", "objective": "dapo"}, {"method": "lora", "objective": "dapo"}]}


@pytest.mark.parametrize(
    "stem", ["00_quickstart", "tab1_model_sizes", "tab2_art_vs_lora", "tab3_dimensionality_alignment"]
)
def test_paper_scale_checks_hold_on_the_committed_tables(stem):
    table, _ = committed(stem)
    checks = table_checks(table, PAPER_EXPECTED.get(stem, []))
    assert all(checks.values()), [k for k, ok in checks.items() if not ok]


PAPER_DOCTORED = [
    (T2, "LoRA DAPO at 0.40, below its warm start", lambda t: _set(t, 0.4, method="lora", objective="dapo")),
    (T2, "an RL arm without a policy update", lambda t: _set(t, 0, "policy_updates", objective="dapo")),
    (T2, "an RL arm missing", lambda t: t[~((t.method == "art") & (t.objective == "dapo"))]),
    (T2, "a control above a trained arm", lambda t: _set(t, 1.0, benchmark="toy_mul", method="control:seed")),
    (T1, "every arm unscored", lambda t: _set(t, 0, "n_test", method="art")),
    (T3, "round trip 0.01", lambda t: png_loss(t, "art-64px", 0.01)),
    (QS, "an RL arm from the seed below the seed control's interval",
     lambda t: _set(_set(_set(t, "dapo", "objective", method="art"), 0.2, method="art"), 0.5, method="control:seed")),
]  # fmt: skip


@pytest.mark.parametrize("stem, regression, doctor", PAPER_DOCTORED, ids=[f"{s}: {r}" for s, r, _ in PAPER_DOCTORED])
def test_a_doctored_table_makes_a_paper_scale_check_fail(stem, regression, doctor, capsys):
    table, _ = committed(stem)
    print_checks(table_checks(doctor(table), PAPER_EXPECTED.get(stem, [])))
    assert "[does not hold]" in capsys.readouterr().out, regression


def test_a_bfloat16_table2_is_held_to_the_bfloat16_floors(capsys):
    table, params = committed(T2)
    low = _set(_set(table, 0.85, benchmark="toy_sub", method="lora"), 0.675, benchmark="toy_mul", method="art")
    assert not all(tab2(low, params).values())  # float32: below 0.9 and 0.8
    assert all(tab2(low.assign(dtype="bfloat16"), params).values())  # what bfloat16 measured
    assert not all(tab2(_set(low, 0.5, benchmark="toy_mul", method="art").assign(dtype="bfloat16"), params).values())
