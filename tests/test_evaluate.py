"""Tests of art_lib.evaluate on the tiny random model: every loader, the PNG path, controls, statistics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from art_lib.controls import control_images, evaluate_controls, random_token_text
from art_lib.data import load_benchmark
from art_lib.evaluate import evaluate, visual_token_count
from art_lib.models import tiny_model
from art_lib.pixel_prompt import PixelPrompt
from art_lib.prompting import example_text
from art_lib.scoring import EvalResult, score_completions, wilson_interval

DATA = Path(__file__).parent / "data"
SIZE = 64  # the processor's min_pixels lifts it to 256x256 = 64 visual tokens; kept small on disk
FAST = dict(max_new_tokens=8, progress=False)


def lively(model, scale: float = 4.0):
    """Scale the random weights so greedy outputs depend on prompt and image (at 1x they are all '\\n')."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def tiny():
    model, processor = tiny_model(seed=0)
    return lively(model), processor


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("art") / "artwork.png"
    return PixelPrompt.from_noise(256, seed=3).save_png(path, note="test artwork")


def _gpqa_csv(path: Path) -> Path:
    rows = [
        {
            "Record ID": f"rec{i}",
            "Question": f"Which value is {i}?",
            "Correct Answer": str(i),
            "Incorrect Answer 1": str(i + 1),
            "Incorrect Answer 2": str(i + 2),
            "Incorrect Answer 3": str(i + 3),
        }
        for i in range(3)
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _examples(name: str, tmp_path: Path, n: int = 3) -> list[dict]:
    kw = {
        "gsm8k": dict(source=DATA / "gsm8k"),
        "svamp": dict(source=DATA / "svamp"),
        "gpqa": dict(source=_gpqa_csv(tmp_path / "gpqa_diamond.csv")) if name == "gpqa" else {},
        "toolmind": dict(source=DATA / "toolmind", split="all"),
        "bfcl_parallel": dict(source=DATA / "bfcl"),
        "bfcl_irrelevance": dict(source=DATA / "bfcl"),
    }[name]
    return load_benchmark(name, limit=n, **kw)


# --------------------------------------------------------------------------- statistics


def test_wilson_hand_computed():
    # k=8, n=10, z=1.96: denominator 1 + 3.8416/10 = 1.38416; center (0.8 + 0.19208) / 1.38416 = 0.716738;
    # half-width 1.96 * sqrt(0.8*0.2/10 + 3.8416/400) / 1.38416 = 1.96 * 0.160012 / 1.38416 = 0.226581.
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490157, abs=2e-6)
    assert hi == pytest.approx(0.943319, abs=2e-6)


def test_wilson_edges():
    z2 = 1.96**2
    assert wilson_interval(0, 20) == (0.0, pytest.approx(z2 / (20 + z2)))
    assert wilson_interval(20, 20) == (pytest.approx(20 / (20 + z2)), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(3, 11)
    lo2, hi2 = wilson_interval(8, 11)
    assert (lo, hi) == (pytest.approx(1 - hi2), pytest.approx(1 - lo2))  # symmetric in k <-> n-k
    for bad in [(-1, 3), (4, 3), (0, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)


# --------------------------------------------------------------------------- scoring


def test_empty_and_correct_completions_score(tmp_path):
    ex = _examples("gsm8k", tmp_path, n=2)
    res = score_completions(ex, ["", None], "gsm8k")
    assert res.n == 2 and res.k == 0 and res.accuracy == 0.0
    assert list(res.rows["score"]) == [0.0, 0.0] and res.rows["parsed"].isna().all()
    res = score_completions(ex, [f"so\nAnswer: {ex[0]['answer']}", "Answer: -1"], "gsm8k")
    assert list(res.rows["correct"]) == [True, False] and res.rows["parsed"][0] == ex[0]["answer"]
    assert res.accuracy == 0.5 and (res.ci_low, res.ci_high) == wilson_interval(1, 2)
    assert set(res.summary()) >= {"n", "accuracy", "ci_low", "ci_high", "benchmark"}


def test_unknown_benchmark_raises(tiny, tmp_path):
    model, processor = tiny
    with pytest.raises(ValueError, match="Unknown benchmark"):
        evaluate(model, processor, _examples("gsm8k", tmp_path, 1), benchmark="not_a_benchmark", **FAST)


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("name", ["gsm8k", "svamp", "gpqa", "toolmind", "bfcl_parallel", "bfcl_irrelevance"])
def test_every_loader_evaluates(tiny, png, tmp_path, name):
    model, processor = tiny
    examples = _examples(name, tmp_path)
    res = evaluate(model, processor, examples, image=png, benchmark=name, batch_size=2, **FAST)
    assert isinstance(res, EvalResult) and res.n == len(examples) == len(res.rows) == 3
    assert list(res.rows["id"]) == [ex["id"] for ex in examples]
    assert {"id", "prompt", "completion", "parsed", "answer", "correct"} <= set(res.rows.columns)
    assert 0.0 <= res.accuracy <= 1.0 and 0.0 <= res.ci_low <= res.accuracy <= res.ci_high <= 1.0
    assert (res.rows["completion_tokens"] <= 8).all()


def test_png_goes_through_official_processor(tiny, png, tmp_path, monkeypatch):
    model, processor = tiny
    examples = _examples("gsm8k", tmp_path, 2)
    seen = []
    real_generate = model.generate

    def spy(**kwargs):
        seen.append(kwargs)
        return real_generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    by_path = evaluate(model, processor, examples, image=png, benchmark="gsm8k", **FAST)
    with Image.open(png) as img:
        official = processor.image_processor(images=[img, img], return_tensors="pt")
    assert torch.equal(seen[0]["pixel_values"], official["pixel_values"])
    assert torch.equal(seen[0]["image_grid_thw"], official["image_grid_thw"])
    # The same file given as a PIL image gives the same completions; another image does not.
    by_pil = evaluate(model, processor, examples, image=Image.open(png), benchmark="gsm8k", **FAST)
    assert list(by_pil.rows["completion"]) == list(by_path.rows["completion"])
    other = evaluate(
        model, processor, examples, image=PixelPrompt.from_noise(256, 4).to_pil(), benchmark="gsm8k", **FAST
    )
    assert list(other.rows["completion"]) != list(by_path.rows["completion"])


def test_float_pixels_are_refused(tiny, tmp_path):
    model, processor = tiny
    with pytest.raises(TypeError, match="save_png"):
        evaluate(
            model, processor, _examples("gsm8k", tmp_path, 1), image=torch.rand(3, 64, 64), benchmark="gsm8k", **FAST
        )


def test_greedy_is_deterministic_and_batch_independent(tiny, png, tmp_path):
    model, processor = tiny
    # Maths prompts among the tool ones (other lengths), scored as tool tasks: "[]" (no call) is their gold.
    maths = [{**e, "answer": "[]"} for e in _examples("gsm8k", tmp_path, 2)]
    examples = _examples("bfcl_parallel", tmp_path, 3) + maths
    runs = [evaluate(model, processor, examples, image=png, benchmark="bfcl", batch_size=b, **FAST) for b in (8, 8, 1)]
    completions = [list(r.rows["completion"]) for r in runs]
    assert completions[0] == completions[1] == completions[2]
    assert len(set(completions[0])) > 1  # the model is not constant: the comparison means something


def test_sampling_is_seeded(tiny, tmp_path):
    model, processor = tiny
    examples = _examples("gsm8k", tmp_path, 2)
    kw = dict(benchmark="gsm8k", greedy=False, temperature=1.0, top_p=0.9, **FAST)
    a = evaluate(model, processor, examples, seed=1, **kw)
    b = evaluate(model, processor, examples, seed=1, **kw)
    assert list(a.rows["completion"]) == list(b.rows["completion"])
    assert a.config["seed"] == 1 and a.config["image"] is None


def test_a_prompt_past_the_context_is_refused_before_generation_as_training_refuses_it(tiny, png, tmp_path):
    model, processor = tiny
    context = model.config.text_config.max_position_embeddings
    fits = _examples("gsm8k", tmp_path, 1)
    long = {"id": "long", "prompt": "seven " * (4 * context), "answer": "7", "meta": {}}
    for image in (None, png):
        with pytest.raises(
            ValueError,
            match=rf"1 prompt\(s\) do not fit the model's context of {context} tokens "
            r"\(longest: example 'long'",
        ):
            evaluate(model, processor, fits + [long], image=image, benchmark="gsm8k", **FAST)
    # The image's visual tokens count: a prompt that fits as text alone is refused with the artwork.
    edge = _longest_prompt_below(processor, context - 8)
    assert context - 64 < len(_tokens(processor, example_text(processor, edge, image=False))) < context
    with pytest.raises(ValueError, match=f"context of {context} tokens \\(longest: example 'edge'"):
        evaluate(model, processor, [edge], image=png, benchmark="gsm8k", **FAST)


def _tokens(processor, text: str) -> list[int]:
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


def _longest_prompt_below(processor, limit: int) -> dict:
    """The example with the most words "seven" whose rendered text-only prompt stays below `limit` tokens."""
    make = lambda n: {"id": "edge", "prompt": "seven " * n, "answer": "7", "meta": {}}  # noqa: E731
    low, high = 1, limit  # bisect on the word count
    while low < high:
        mid = (low + high + 1) // 2
        fits = len(_tokens(processor, example_text(processor, make(mid), image=False))) < limit
        low, high = (mid, high) if fits else (low, mid - 1)
    return make(low)


# --------------------------------------------------------------------------- controls


def test_control_images_and_random_text(tiny):
    _, processor = tiny
    images = control_images(SIZE, "math", seed=0)
    assert set(images) == {"seed", "noise"}
    assert all(im.size == (SIZE, SIZE) and im.mode == "RGB" for im in images.values())
    assert visual_token_count(processor, images["seed"]) == 64
    tok = processor.tokenizer
    for n, seed in [(1, 0), (64, 0), (64, 1), (300, 2)]:
        text = random_token_text(tok, n, seed=seed)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == n and not set(ids) & set(tok.added_tokens_decoder)
    assert random_token_text(tok, 64, seed=0) == random_token_text(tok, 64, seed=0)
    assert random_token_text(tok, 64, seed=0) != random_token_text(tok, 64, seed=1)


@pytest.mark.parametrize("size", [(256, 256), (250, 300), (100, 700), (1000, 1000)])
def test_visual_token_count_equals_the_official_processors_even_when_it_resizes(tiny, size):
    """`num_visual_tokens(..., resize=True)` against the `<|image_pad|>` count of the official processor's ids."""
    _, processor = tiny
    image = Image.new("RGB", size[::-1], (10, 200, 30))  # PIL sizes are (W, H)
    ids = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[image], return_tensors="pt")
    expected = int((ids["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert visual_token_count(processor, image) == expected


def test_evaluate_controls_table(tiny, png, tmp_path):
    model, processor = tiny
    examples = _examples("gsm8k", tmp_path, 2)
    df, results = evaluate_controls(
        model, processor, examples, benchmark="gsm8k", artwork=png, return_results=True, **FAST
    )
    assert list(df["control"]) == ["artwork", "text_only", "seed", "noise", "random_text"]
    assert list(df["visual_tokens"]) == [64, 0, 64, 64, 64]
    assert (df["n"] == 2).all() and df["accuracy"].between(0, 1).all()
    # The random-text control prefixes the user text and sends no image.
    rt = results["random_text"]
    assert all(p.endswith(ex["prompt"]) and p != ex["prompt"] for p, ex in zip(rt.rows["prompt"], examples))
    assert rt.config["image"] is None and results["artwork"].config["image"] == str(png)
    assert not math.isnan(df["ci_high"].iloc[0])
    with pytest.raises(ValueError, match="unknown controls"):
        evaluate_controls(model, processor, examples, benchmark="gsm8k", controls=["bogus"], **FAST)


def test_engine_vllm_without_vllm_names_the_install(tiny, monkeypatch):
    """`evaluate(engine="vllm")` (the one entry for offline vLLM) without vLLM installed says how to install it."""
    import sys

    from art_lib.vllm_compat import VLLM_INSTALL_HINT

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    model, proc = tiny_model(seed=1)
    with pytest.raises(ImportError, match=r"pip install 'art-lib\[vllm\]'"):
        evaluate(model, proc, [{"id": "0", "prompt": "1+1?", "answer": "2", "meta": {}}], benchmark="gsm8k",
                 engine="vllm", **FAST)  # fmt: skip
    assert VLLM_INSTALL_HINT.startswith("vLLM is not installed")


def test_hf_generator_is_what_evaluate_generates_with(tiny, png):
    """`HFGenerator` on a PIL image gives `evaluate`'s completions, token counts and finish reasons."""
    from art_lib.generation import Sampling
    from art_lib.hf_generator import HFGenerator

    model, proc = tiny
    exs = [{"id": str(i), "prompt": f"What is {i} + 1?", "answer": str(i + 1), "meta": {}} for i in range(3)]
    res = evaluate(model, proc, exs, image=png, benchmark="gsm8k", batch_size=2, **FAST)
    pil = Image.open(png).convert("RGB")
    outs = HFGenerator(model, proc, batch_size=2).generate(
        [example_text(proc, e) for e in exs], image=pil, sampling=Sampling(max_new_tokens=8, greedy=True)
    )
    assert [o[0].text for o in outs] == list(res.rows["completion"])
    assert [len(o[0].token_ids) for o in outs] == list(res.rows["completion_tokens"])
    assert [o[0].finish_reason for o in outs] == list(res.rows["finish_reason"])
