"""The toy world: corpus, deterministic pretraining, shipped checkpoints, benchmarks, frozen behaviour."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from art_lib import toy
from art_lib.models import count_parameters, load_frozen, weights_hash
from art_lib.pixel_prompt import PixelPrompt
from art_lib.toy import tasks as T

STEPS = 20  # a very short run of the smallest size: enough to test determinism and the file format


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Two pretraining runs with the same seed and one with another seed (smallest size, few steps)."""
    root = tmp_path_factory.mktemp("toy")
    return {
        name: toy.pretrain_toy_model("small", seed, steps=STEPS, out_dir=root / name, progress=False, batch_size=8)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    }


def _info(path):
    return json.loads((path / "toy_info.json").read_text())


def test_pretraining_is_deterministic(pretrained):
    a, b, c = (_info(pretrained[k]) for k in "abc")
    assert a["weights_hash"] == b["weights_hash"]
    assert a["weights_hash"] != c["weights_hash"]
    assert (pretrained["a"] / "model.safetensors").read_bytes() == (pretrained["b"] / "model.safetensors").read_bytes()
    assert a["recipe"]["steps"] == STEPS and a["parameters"] == count_parameters(toy.toy_model("small")[0])
    assert a["threads"] == 1 and a["cpu"]  # the recipe's thread count, and the CPU that computed the floats


def test_checkpoint_loads_frozen_like_a_real_one(pretrained):
    from PIL import Image

    from art_lib.evaluate import evaluate
    from art_lib.preprocess import num_visual_tokens
    from art_lib.toy.pretrain import _image_inputs

    model, processor = load_frozen(pretrained["a"])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert weights_hash(model) == _info(pretrained["a"])["weights_hash"]
    assert type(model).__name__ == "Qwen3_5ForConditionalGeneration"
    # The toy checkpoint's own image processor takes 64x64 pictures as they are: 4 visual tokens.
    assert processor.image_processor.size["shortest_edge"] == T.IMAGE_SIZE**2
    assert num_visual_tokens(T.IMAGE_SIZE, T.IMAGE_SIZE, processor.image_processor) == 4
    img = T.draw_task_picture("add", np.random.default_rng(0))
    official = processor.image_processor(images=[Image.fromarray(img)], return_tensors="pt")
    assert official["image_grid_thw"].tolist() == [[1, 4, 4]]
    # Pretraining preprocesses its pictures exactly as the official processor does.
    assert torch.equal(official["pixel_values"], _image_inputs([img], processor)["pixel_values"])
    res = evaluate(
        model,
        processor,
        toy.load_toy("add", n=2),
        image=Image.fromarray(img),
        benchmark="toy_add",
        max_new_tokens=3,
        progress=False,
    )
    assert res.n == 2 and all(isinstance(s, str) for s in res.rows["completion"])


def test_pretraining_batches_match_the_chat_template():
    from art_lib.prompting import chat_text, encode, pad_batch
    from art_lib.toy.pretrain import _row_ids, _Templates

    processor = toy.toy_processor()
    img = T.draw_task_picture("max", np.random.default_rng(0))
    prompt_ids, comp_ids = _row_ids(processor, ["3 and 4"], [img], ["Answer: 4"], _Templates(processor))
    batch = pad_batch(processor, prompt_ids, comp_ids)
    ref = encode(processor, [chat_text(processor, "3 and 4", image=True)], ["Answer: 4"], num_image_tokens=4)
    assert torch.equal(batch.input_ids, ref.input_ids) and torch.equal(batch.completion_mask, ref.completion_mask)


def test_shipped_checkpoints_load_with_their_recorded_hash():
    """Every shipped toy checkpoint loads through `load_frozen` and its weights are the ones recorded."""
    from art_lib.registry import resolve_model

    # Every toy the notebooks name (tab1_model_sizes: small, base, large; fig_style_tradeoff: base-texture).
    assert {"small", "base", "large", "base-texture"} <= set(toy.shipped_names()), toy.shipped_names()
    for name in toy.shipped_names():
        path = toy.toy_checkpoint(name)
        info = _info(path)
        assert resolve_model(f"toy:{name}") == (str(path), f"toy:{name}")
        model, _ = load_frozen(path)
        assert weights_hash(model) == info["weights_hash"], name
        assert info["recipe_hash"] == toy.recipe_hash(info["recipe"]) and info["recipe"]["version"] == 2
        size, pictures = toy.parse_spec(name)
        assert info["recipe_hash"] == toy.recipe_hash(toy.recipe(size, pictures=pictures))  # today's recipe
        assert info["seed"] == toy.default_seed(name)  # what `python -m art_lib.toy pretrain --name <name>` uses
        text = model.config.text_config
        # vLLM's CPU gated-delta-net kernel takes head dims of 64 or 128 only.
        assert text.linear_key_head_dim == text.linear_value_head_dim == 64, name
        assert (path / "model.safetensors").stat().st_size < 20 * 2**20


def test_weight_identities_keep_the_values_checkpoints_recorded():
    """`weights_fingerprint` of toy:base is what the training checkpoints under results/ recorded (a resume
    compares it), and `weights_hash` reads any dtype and every byte: one changed value changes it."""
    from art_lib.models import weights_fingerprint

    model, _ = load_frozen(toy.toy_checkpoint("base"))
    assert weights_fingerprint(model) == "4cfea58a372769f7"  # results/fig_artworks/checkpoints/*/meta.json
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = weights_hash(state)
    name = max(state, key=lambda k: state[k].numel())
    state[name].view(-1)[state[name].numel() // 2] += 1e-3  # the middle of the largest tensor: never sampled
    assert weights_hash(state) != before
    assert weights_hash({k: v.bfloat16() for k, v in state.items()}) != weights_hash(state)


def test_unshipped_toy_names_say_how_to_pretrain():
    with pytest.raises(FileNotFoundError, match="python -m art_lib.toy pretrain --name xl"):
        toy.toy_checkpoint("xl")
    with pytest.raises(ValueError, match="unknown toy size"):
        toy.toy_checkpoint("huge")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_frozen_base_follows_instructions_and_pictures(dtype):
    """The shipped base model, frozen: no cue -> the benchmarks score <= 30%; instruction or picture >= 95%."""
    model, processor = load_frozen(toy.toy_checkpoint("base"), dtype=dtype)
    assert next(model.parameters()).dtype == dtype
    res = toy.evaluate_toy(model, processor)
    assert max(res["none"].values()) <= 0.3, res
    assert min(res["picture"].values()) >= 0.95 and set(res["picture"]) == set(T.PICTURE_TASKS), res
    assert min(res["text"].values()) >= 0.95 and set(res["text"]) == set(T.TASKS), res  # `mul` included


@pytest.mark.skipif(
    not os.environ.get("ART_TOY_VERIFY"),
    reason="pretrains a toy model (9-38 min on a 2-core CPU); "
    "set ART_TOY_VERIFY=1 (or run `python -m art_lib.toy verify base`)",
)
def test_fresh_pretraining_reproduces_the_shipped_weights():
    """On the CPU type the checkpoint was built on, a fresh pretraining gives the shipped weights bit for bit."""
    from art_lib.results import cpu_model
    from art_lib.toy.__main__ import verify

    name = os.environ.get("ART_TOY_VERIFY_NAME", "base")
    res = verify(name, progress=False)
    if res["shipped_cpu"] != cpu_model():
        pytest.skip(f"shipped weights were computed on {res['shipped_cpu']!r}, this is {cpu_model()!r}")
    assert res["same"], res


def test_cli_pretrains_lists_and_evaluates(tmp_path, capsys):
    from art_lib.toy.__main__ import main

    args = ["pretrain", "--name", "small", "--steps", "1", "--share", "mul=2", "--out-dir", str(tmp_path / "cli")]
    assert main(args) == 0
    assert (tmp_path / "cli" / "config.json").exists() and str(tmp_path / "cli") in capsys.readouterr().out
    assert _info(tmp_path / "cli")["recipe"]["task_share"] == {"mul": 2.0}
    # Without --seed a toy name pretrains with its recipe seed: the one its shipped checkpoint records.
    assert main(["pretrain", "--name", "base", "--steps", "1", "--out-dir", str(tmp_path / "seeded")]) == 0
    assert _info(tmp_path / "seeded")["seed"] == toy.default_seed("base") == _info(toy.toy_checkpoint("base"))["seed"]
    capsys.readouterr()
    with pytest.raises(SystemExit, match="task=number"):
        main(args[:6] + ["mul:2"] + args[7:])
    assert main(["list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(toy.shipped_names())
    assert main(["eval", str(tmp_path / "cli"), "--n", "1"]) == 0
    cues = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(cues) == {"none", "text", "picture", "distractor"}
    assert main(["eval", "small", "--n", "2", "--dtype", "bfloat16", "--controls", "--seed-icon", "tools"]) == 0
    cues, controls = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert set(cues) == {"none", "text", "picture", "distractor"}
    assert set(controls["controls"]) == {"text_only", "seed", "noise", "random_text"}


def test_toy_controls_are_the_notebooks_controls():
    """`toy_controls` scores what Table 2's control rows score (`experiments.control_rows`, the notebooks' path),
    and the shipped base passes the tables' check on them (every control <= 30%, with their maths seed icon)."""
    from art_lib.experiments import Runtime, control_rows

    path = toy.toy_checkpoint("base")
    res = toy.toy_controls(path, n=16, seed_icon="tools")  # a non-default icon must reach both paths too
    assert set(res) == {"text_only", "seed", "noise", "random_text"}
    assert all(set(v) == set(T.TASKS) for v in res.values())
    for task in ("add", "tool"):
        rt = Runtime(device="cpu", dtype="float32")
        rows = control_rows(path, f"toy_{task}", n_test=16, seed_icon="tools", runtime=rt)
        assert {r["method"].removeprefix("control:"): r["accuracy"] for r in rows} == {c: res[c][task] for c in res}
    tables = toy.toy_controls(path, n=16)  # the tables' default seed icon ("math")
    assert max(acc for v in tables.values() for acc in v.values()) <= 0.3, tables


def test_mul_is_only_ever_requested_in_text():
    rng = np.random.default_rng(0)
    examples = T.sample_examples(rng, 3000)
    by_cue = {}
    for e in examples:
        by_cue.setdefault(e["cue"], set()).add(e["task"])
        if e["image_kind"] == "task":
            assert e["task"] in T.PICTURE_TASKS and e["task"] != "mul"
        if e["task"] == "mul":
            assert e["cue"] == "text" and any(i in e["prompt"] for i in T.INSTRUCTIONS["mul"])
        if e["cue"] == "none":
            assert e["completion"] == T.NO_CUE_REPLY and e["prompt"] == T.operands_text(e["a"], e["b"])
    assert by_cue["text"] == set(T.TASKS)
    assert by_cue["picture"] == set(T.PICTURE_TASKS)
    assert "mul" not in T.PICTURE_TASKS and "mul" not in T.PICTURE_STYLE
    with pytest.raises(ValueError):
        T.draw_task_picture("mul", rng)


def _corpus_share(share):
    """Each task's share of the cued corpus, from the mix and `text_task_weights` (exact)."""
    total = sum(w for *_, w in T.MIX)
    pic = sum(w for cue, _, w in T.MIX if cue in ("picture", "both")) / total
    text = sum(w for cue, _, w in T.MIX if cue == "text") / total
    w = T.text_task_weights(T.MIX, share)
    return {
        t: text * w[i] + (pic / len(T.PICTURE_TASKS) if t in T.PICTURE_TASKS else 0.0) for i, t in enumerate(T.TASKS)
    }


@pytest.mark.parametrize("mul", [1.0, 1.5, 2.0])
def test_task_share_sets_each_tasks_share_of_the_corpus(mul):
    """`share={"mul": k}` gives mul k times the corpus share of every other task; pictures are unchanged."""
    exact = _corpus_share({"mul": mul})
    for t in T.TASKS:
        assert exact[t] == pytest.approx(exact["add"] * (mul if t == "mul" else 1.0)), exact
    examples = T.sample_examples(np.random.default_rng(1), 4000, share={"mul": mul})
    cued = [e for e in examples if e["cue"] != "none"]
    counts = {t: sum(e["task"] == t for e in cued) / len(cued) for t in T.TASKS}
    for t in T.TASKS:
        assert counts[t] == pytest.approx(exact[t] / sum(exact.values()), abs=0.025), (t, counts, exact)
    pictures = [e for e in examples if e["image_kind"] == "task"]
    assert len(pictures) / len(examples) == pytest.approx(0.40, abs=0.025)
    # Equal shares are the recipe of every checkpoint shipped before shares existed: same draws, bit for bit.
    if mul == 1.0:
        assert T.text_task_weights(T.MIX, {}).tobytes() == T.text_task_weights(T.MIX).tobytes()
        a = T.sample_examples(np.random.default_rng(3), 40)
        b = T.sample_examples(np.random.default_rng(3), 40, share={"mul": 1.0})
        assert [e["prompt"] for e in a] == [e["prompt"] for e in b]


def test_task_share_is_validated_and_recorded_in_the_recipe():
    with pytest.raises(ValueError, match="unknown toy tasks"):
        T.text_task_weights(T.MIX, {"div": 2.0})
    with pytest.raises(ValueError, match="picture cues alone"):
        T.text_task_weights(T.MIX, {"mul": 5.0})
    with pytest.raises(ValueError, match="positive"):
        toy.recipe("small", share={"mul": 0.0})
    assert "task_share" not in toy.recipe("small", share={}) and "task_share" not in toy.recipe("base", share={})
    for size in toy.SIZES:  # the default is the size's TASK_SHARE
        assert toy.recipe(size) == toy.recipe(size, share=toy.TASK_SHARE.get(size, {}))
    more = toy.recipe("base", share={"mul": 2})
    assert more["task_share"] == {"mul": 2.0}
    assert toy.recipe_hash(more) != toy.recipe_hash(toy.recipe("base", share={}))


def test_corpus_is_reproducible_and_pictures_vary():
    a = T.sample_examples(np.random.default_rng(5), 50)
    b = T.sample_examples(np.random.default_rng(5), 50)
    for x, y in zip(a, b):
        assert x["prompt"] == y["prompt"] and x["completion"] == y["completion"]
        assert (x["image"] is None and y["image"] is None) or np.array_equal(x["image"], y["image"])
    rng = np.random.default_rng(0)
    for task in T.PICTURE_TASKS:
        p, q = T.draw_task_picture(task, rng), T.draw_task_picture(task, rng)
        assert p.shape == (64, 64, 3) and p.dtype == np.uint8 and not np.array_equal(p, q)


def test_benchmarks_load_and_score():
    from art_lib.data import load_benchmark
    from art_lib.rewards import get_scorer

    for task in T.TASKS:
        test = load_benchmark(f"toy_{task}", split="test")
        train = toy.load_toy(task, "train")
        assert len(test) == 40 and len(train) == 60
        pairs = {(e["meta"]["a"], e["meta"]["b"]) for e in test}
        assert pairs.isdisjoint({(e["meta"]["a"], e["meta"]["b"]) for e in train})
        e = test[0]
        assert set(e) == {"id", "prompt", "answer", "meta"}
        assert e["prompt"] == T.operands_text(e["meta"]["a"], e["meta"]["b"])
        assert not any(i in e["prompt"] for i in T.INSTRUCTIONS[task])
        with_instr = toy.load_toy(task, "test", instruction=True)
        assert with_instr[0]["answer"] == e["answer"] and with_instr[0]["prompt"].endswith(e["prompt"])
        assert with_instr[0]["prompt"].split("\n")[0] in T.INSTRUCTIONS[task]
        scorer = get_scorer(f"toy_{task}")
        a, b = e["meta"]["a"], e["meta"]["b"]
        assert e["meta"]["target"] == T.completion(task, a, b) and scorer(e["meta"]["target"], e) == 1.0
        from art_lib.registry import default_sft_target as sft_completion

        assert sft_completion(e) == e["meta"]["target"]  # the kit's trainer fine-tunes on the same target
        assert scorer(T.NO_CUE_REPLY, e) == 0.0
        assert scorer(T.completion("max" if task != "max" else "add", a + 1, b), e) == 0.0
    assert len(toy.load_toy("add", n=200)) == 200 and len(load_benchmark("toy_add", split="train", limit=7)) == 7
    assert toy.load_toy("add", seed=1)[0]["id"] == "toy_add-test-0000"
    math = get_scorer("toy_sub")
    assert math("Answer: -3", {"answer": T.answer("sub", 2, 5)}) == 1.0 and math("Answer: 3", {"answer": "-3"}) == 0.0
    tool = get_scorer("toy_tool")
    ref = {"answer": T.answer("tool", 12, 7)}
    assert tool('<tool_call>{"arguments": {"sec": 7, "min": 12}, "name": "timer"}</tool_call>', ref) == 1.0
    assert tool('<tool_call>{"name": "timer", "arguments": {"min": 12, "sec": 8}}</tool_call>', ref) == 0.0
    assert tool('<tool_call>{"name": "timer", </tool_call>', ref) == 0.0
    with pytest.raises(ValueError, match="Unknown benchmark"):
        load_benchmark("toy_div")


@pytest.mark.parametrize("objective", ["sft", "dapo"])
def test_short_art_run_beats_the_seed_image(tmp_path, objective):
    """ART on toy_add, scored from the saved PNG, against the seed icon under the same scorer.

    DAPO starts from an 8-step SFT warm start (Table 2's): from the bare seed icon no rollout earns a reward
    and RL has nothing to learn from.
    """
    from art_lib.data import load_benchmark
    from art_lib.evaluate import evaluate
    from art_lib.experiments import Arm, Checkpointing, run_arm
    from art_lib.models import load_frozen

    base_checkpoint = toy.toy_checkpoint("base")
    test = load_benchmark("toy_add", split="test")
    model, processor = load_frozen(base_checkpoint)
    seed_png = PixelPrompt.from_icon("math", 64).save_png(tmp_path / "seed.png")
    seed_acc = evaluate(
        model, processor, test, image=seed_png, benchmark="toy_add", max_new_tokens=8, progress=False
    ).accuracy
    if objective == "sft":
        arm = Arm(base_checkpoint, "toy_add", "art", test_examples=test, train=dict(steps=15, batch_size=16, lr=0.05))
        row, _ = run_arm(arm, checkpointing=Checkpointing(tmp_path))
    else:
        arm = Arm(
            base_checkpoint,
            "toy_add",
            "art",
            objective="dapo",
            test_examples=test,
            train=dict(steps=15, batch_size=8, num_generations=8, max_completion_length=48, lr=0.05),
            warm_start={"steps": 8, "lr": 0.05, "batch_size": 16},
        )
        row, res = run_arm(arm, checkpointing=Checkpointing(tmp_path))
        assert res.history["reward"].iloc[-3:].mean() > res.history["reward"].iloc[:3].mean()
    assert row["accuracy"] >= seed_acc + 0.3, (row["accuracy"], seed_acc)


def test_run_info_records_the_toy_weights_used(tmp_path):
    """Results folders name the exact toy weights (another CPU may pretrain to other floats)."""
    import time

    from art_lib.results import write_run_info

    path = write_run_info(tmp_path, {"model": "toy:base", "models": ["toy:base", "toy:xl"]}, time.time())
    info = json.loads(path.read_text())["checkpoints"]
    shipped = _info(toy.toy_checkpoint("base"))
    assert info["toy:base"] == {k: shipped[k] for k in toy.checkpoints.IDENTITY_KEYS}
    assert info["toy:xl"] == {}  # not shipped: nothing to record


def test_texture_pictures_carry_their_task_in_the_tile_frequency():
    # Independent of how the pictures are drawn: the 2-D spectrum of each texture picture peaks at
    # its task's tile frequency (add: columns alternate, sub: rows alternate, max: 1-px checkerboard,
    # tool: 2-px checkerboard), well above the bins of the other tasks.
    n = T.IMAGE_SIZE
    bins = {"add": (0, n // 2), "sub": (n // 2, 0), "max": (n // 2, n // 2), "tool": (n // 4, n // 4)}
    rng = np.random.default_rng(0)
    for task in T.PICTURE_TASKS:
        for _ in range(5):
            img = T.draw_task_picture(task, rng, kind="texture").astype(np.float64)
            spec = np.abs(np.fft.fft2(img - img.mean(axis=(0, 1)), axes=(0, 1))).sum(axis=2)
            own = spec[bins[task]]
            others = max(spec[b] for t, b in bins.items() if t != task)
            assert own > 5 * others, (task, own, others)
    glyph = T.draw_task_picture("add", np.random.default_rng(1))
    assert not np.array_equal(glyph, T.draw_task_picture("add", np.random.default_rng(1), kind="texture"))
    with pytest.raises(ValueError, match="picture kind"):
        T.draw_task_picture("add", rng, kind="stripes")
    with pytest.raises(ValueError, match="multiple of 4"):
        T.draw_task_picture("add", rng, size=66, kind="texture")


def test_toy_names_select_size_and_picture_kind(tmp_path):
    assert toy.parse_spec("base") == ("base", "glyph")
    assert toy.parse_spec("small-texture") == ("small", "texture")
    assert toy.toy_name(*toy.parse_spec("small-texture")) == "small-texture" and toy.toy_name("base") == "base"
    with pytest.raises(ValueError, match="picture kind"):
        toy.parse_spec("base-stripes")
    with pytest.raises(ValueError, match="unknown toy size"):
        toy.parse_spec("huge")
    glyph, texture = toy.recipe("base"), toy.recipe("base", pictures="texture")
    assert "pictures" not in glyph and texture["pictures"] == "texture"
    assert toy.recipe_hash(glyph) != toy.recipe_hash(texture)
    # A texture pretraining run records its kind, and evaluate_toy draws that kind of picture for it.
    path = toy.pretrain_toy_model(
        "small", 0, steps=2, out_dir=tmp_path / "tex", progress=False, batch_size=4, pictures="texture"
    )
    assert _info(path)["recipe"]["pictures"] == "texture"
    drawn = []
    real = T.draw_task_picture

    def spy(task, rng, size=T.IMAGE_SIZE, kind="glyph"):
        drawn.append(kind)
        return real(task, rng, size, kind)

    import unittest.mock

    with unittest.mock.patch.object(T, "draw_task_picture", spy):
        toy.evaluate_toy(path, n=1)
    assert drawn and set(drawn) == {"texture"}
