"""Write the kit's notebooks (without outputs) from the cell sources below.

    python scripts/make_notebooks.py

Notebooks are documents: short cells that call `art_lib` and show a result. Keeping their source
here makes reviews readable; the generated .ipynb files are committed too.
"""

from pathlib import Path

import nbformat as nbf

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"

SETUP = '''import os, time
import pandas as pd
import torch
from IPython.display import display

from art_lib.results import results_dir, write_table, save_figure, write_run_info

from art_lib.experiments import resolve_runtime

torch.set_num_threads(cpu_threads)
started = time.time()
params = {k: v for k, v in dict(globals()).items() if k in PARAMETERS}
out = results_dir(STEM + (f".{results_tag}" if results_tag else ""), root=os.environ.get("ART_RESULTS_ROOT"))
device, dtype = resolve_runtime(device, dtype)  # "auto" -> what this machine runs
runtime = dict(device=device, dtype=dtype, data_dir=data_dir, max_new_tokens=max_new_tokens,
               eval_batch_size=eval_batch_size)  # every model load and evaluation
arm_kw = dict(runtime, micro_batch_size=micro_batch_size, generation_batch_size=generation_batch_size,
              gradient_checkpointing=gradient_checkpointing,
              checkpoint_every=checkpoint_every, resume=resume, reward=reward, overlong_filter=overlong_filter,
              progress=progress)  # every arm
print("results ->", out, "|", device, dtype)'''

CLOSE = '''from art_lib.models import linear_attention_kernels

write_run_info(out, params, started, device=device, dtype=dtype, linear_attention_kernels=linear_attention_kernels())
print("wrote", sorted(p.name for p in out.iterdir()))'''


#: Parameters every notebook has (after its own, unless it sets one itself): where and how it runs.
COMMON_PARAMS = '''
device = "auto"             # "auto": CUDA when present, else CPU; or "cuda", "cpu" (CUDA asked, none there: error)
dtype = "auto"              # frozen model: "auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float32"
data_dir = None             # None: the loaders' hub defaults; a folder of <benchmark>/ folders; {benchmark: source}
max_new_tokens = None       # generation budget of evaluation and RL rollouts (None: the benchmark's)
eval_batch_size = 8         # prompts per generate call when evaluating
micro_batch_size = None     # rows per forward/backward pass in training (None: a whole step at once)
generation_batch_size = None  # prompts per generate call in RL rollouts (None: a whole step at once)
gradient_checkpointing = False  # recompute activations in the backward pass: less memory, slower
checkpoint_every = 0        # save each arm every N steps under <results>/checkpoints/<arm>/ (0: never)
resume = False              # continue from checkpoints and skip arms finished earlier (<results>/arms.jsonl)
reward = None               # None: the benchmark's scorer; "dry_run" forces informative groups (dry runs only)
overlong_filter = None      # RL: drop truncated completions from the loss (None: on for DAPO; off in dry runs)
progress = False            # a progress bar per arm: steps done, time left
cpu_threads = 1             # torch CPU threads (1 keeps CPU runs bit-reproducible)
results_tag = ""            # "" for default runs; e.g. "paper" for paper-scale runs
'''


def _names(params: str) -> list[str]:
    lines = params.strip().splitlines()
    return [line.split("=")[0].strip() for line in lines if "=" in line and not line.startswith("#")]


def notebook(stem: str, title: str, params: str, cells: list[tuple[str, str]]) -> None:
    own = _names(params)
    params = params.rstrip() + "\n" + "\n".join(line for line in COMMON_PARAMS.strip().splitlines()
                                                 if line.split("=")[0].strip() not in own)
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbf.v4.new_markdown_cell(title))
    p = nbf.v4.new_code_cell(params.strip())
    p.metadata["tags"] = ["parameters"]
    nb.cells.append(p)
    names = _names(params)
    nb.cells.append(nbf.v4.new_code_cell(f"STEM = {stem!r}\nPARAMETERS = {names!r}\n" + SETUP))
    for kind, src in cells:
        nb.cells.append(nbf.v4.new_markdown_cell(src.strip()) if kind == "md" else nbf.v4.new_code_cell(src.strip()))
    nb.cells.append(nbf.v4.new_code_cell(CLOSE))
    for i, c in enumerate(nb.cells):
        c.id = f"{stem[:20]}-{i:02d}"
    NB_DIR.mkdir(exist_ok=True)
    nbf.write(nb, NB_DIR / f"{stem}.ipynb")


CHECK_NOTE = ("The cell below states what the table should show, with margins; the CI re-runs the notebook and "
              "compares these lines, not the digits above them (the exact accuracies depend on the CPU "
              "that trains and generates; `run_info.json` records the toy weights hash and the CPU).")

TOY_NOTE = ("**Toy world.** At the default parameters every number here comes from the kit's own tiny "
            "Qwen3.5-architecture model, pretrained on synthetic tasks and shipped with the kit (`art_lib.toy`), "
            "not from a real "
            "checkpoint: it checks that the method and the code work end to end, it is not a reproduction of the "
            "paper's numbers. The `model` column says `toy:<size>` or the checkpoint id.")

notebook("00_quickstart", f"""# Quick start: train an artwork, save it, score it from the PNG

Loads a frozen model, draws a seed icon, optimises only its pixels for a few steps (SFT), saves the 8-bit
PNG, evaluates the model **from that PNG** through the official processor, and shows it. Under 3 minutes on
a 2-core CPU (the toy models are shipped pretrained: nothing else runs first).

Other scales: `papermill 00_quickstart.ipynb out.ipynb -p model Qwen/Qwen3.5-0.8B -p benchmark gsm8k ...`

{TOY_NOTE}""", '''
model = "toy:base"          # "toy:<size>" (shipped with art_lib) or a checkpoint id / folder
benchmark = "toy_add"       # a registered benchmark (art_lib.registry.benchmark_names())
method = "art"              # art | lora | soft_prompt
objective = "sft"           # sft | grpo | dapo
steps = 300                 # optimiser steps
batch_size = 16             # prompts per step
lr = 0.05                   # Adam learning rate on pixels in [0, 1]
num_generations = 8         # completions per prompt (RL objectives)
image_size = 64             # artwork side in pixels (the toy processor's minimum; 256 for Qwen3.5)
seed_icon = "math"          # math | reasoning | tools
n_test = 40                 # test examples (None: all; the toy test split holds 40 distinct prompts)
seed = 0                    # training seed
''', [
    ("md", "## 1. Model and data"),
    ("code", '''from art_lib.data import load_benchmark
from art_lib.experiments import resolve_model

model_path, model_label = resolve_model(model)
train_examples = load_benchmark(benchmark, data_dir=data_dir, split="train", seed=seed)
test_examples = load_benchmark(benchmark, data_dir=data_dir, split="test", limit=n_test)
print(model_label, "|", len(train_examples), "train /", len(test_examples), "test examples")
pd.DataFrame(test_examples[:3])[["id", "prompt", "answer"]]'''),
    ("md", "## 2. Train (only the pixels change) and evaluate from the saved PNG"),
    ("code", '''from art_lib.experiments import run_arm, control_rows, tidy

row, res = run_arm(model_path, benchmark, method, objective=objective, seed=seed, out_dir=out,
                   train_examples=train_examples, test_examples=test_examples, image_size=image_size,
                   seed_icon=seed_icon, steps=steps, batch_size=batch_size, lr=lr,
                   num_generations=num_generations, model_label=model_label, **arm_kw)
if res is not None:  # None: finished in an earlier run (resume), its row comes from arms.jsonl
    display(res.history[["step", "loss", "grad_norm"]].tail())'''),
    ("code", '''rows = [row] + control_rows(model_path, benchmark, n_test=n_test, image_size=image_size,
                           seed_icon=seed_icon, seed=seed, model_label=model_label, **runtime)
table = tidy(rows)
write_table(table, out)
print(table[["method", "accuracy", "ci_low", "ci_high"]].round(3).to_string(index=False))'''),
    ("md", CHECK_NOTE),
    ("code", '''from art_lib.results import print_checks, table_checks

acc = dict(zip(table["method"], table["accuracy"]))
best_control = max(v for k, v in acc.items() if k.startswith("control:"))
# NBVAL_CHECK_OUTPUT
if model_label.startswith("toy:"):  # margins that only the toy world's known answers justify
    print_checks({f"{method} beats every control by >= 0.3": acc[method] >= best_control + 0.3,
                  "every control scores <= 0.3": best_control <= 0.3})
else:
    print_checks(table_checks(table, [{"method": m} for m in [method, "control:text_only", "control:seed"]]))'''),
    ("md", "## 3. The artwork"),
    ("code", '''import matplotlib.pyplot as plt
from art_lib.pixel_prompt import PixelPrompt

if method == "art":
    learned = PixelPrompt.from_png(out / row["artifact"])
    history = res.history if res is not None else pd.DataFrame({"step": [], "loss": []})
    fig, ax = plt.subplots(1, 3, figsize=(9, 3))
    ax[0].imshow(PixelPrompt.from_icon(seed_icon, image_size).to_pil()); ax[0].set_title("seed")
    ax[1].imshow(learned.to_pil()); ax[1].set_title(f"learned ({steps} steps)")
    ax[2].plot(history["step"], history["loss"]); ax[2].set_title("training loss"); ax[2].set_xlabel("step")
    for a in ax[:2]: a.axis("off")
    save_figure(fig, out, "quickstart")
    plt.show()'''),
])


CI_NOTE = "Accuracy is greedy, scored from the saved artifact (PNG / adapter), with a 95% Wilson interval."

notebook("tab1_model_sizes", f"""# Table 1: ART across model sizes

ART (pixels only) against the text-only model and LoRA, for each model size, on one benchmark.
The paper reports this for several Qwen3.5 sizes; its numbers are not available to us.
Default run: about 2 minutes on a 2-core CPU.

Paper scale (GPU): `papermill tab1_model_sizes.ipynb out.ipynb -f params/tab1_model_sizes.paper.yaml`

{TOY_NOTE}""", '''
models = ["toy:small", "toy:base", "toy:large"]   # model sizes to compare
benchmark = "toy_add"       # benchmark name (art_lib.registry.benchmark_names())
methods = ["art", "lora"]   # trained arms
objective = "sft"           # sft | grpo | dapo
steps = 300                 # optimiser steps per arm
batch_size = 16             # prompts per step
lr_art = 0.05               # learning rate for pixels
lr_lora = 0.005             # learning rate for LoRA weights
lora_weight_decay = 0.05    # L2 on LoRA weights (without it LoRA memorises the 60 toy training pairs)
lora_rank = 8               # LoRA rank
num_generations = 8         # completions per prompt (RL objectives)
image_size = 64             # artwork side
seed_icon = "math"          # seed icon
n_train = None              # training examples (None: the whole train split)
n_test = 40                 # test examples (None: all; the toy test split holds 40)
seeds = [0]                 # training seeds
''', [
    ("md", "## 1. Train and evaluate every (size, method, seed)"),
    ("code", '''from art_lib.experiments import control_rows, resolve_model, run_arm, tidy

rows = []
for m in models:
    path, label = resolve_model(m)
    controls = control_rows(path, benchmark, n_test=n_test, image_size=image_size, seed_icon=seed_icon,
                            model_label=label, **runtime)
    rows += [r for r in controls if r["method"] in ("control:text_only", "control:seed")]
    for seed in seeds:
        for method in methods:
            lr = lr_lora if method == "lora" else lr_art
            wd = lora_weight_decay if method == "lora" else 0.0
            row, _ = run_arm(path, benchmark, method, objective=objective, seed=seed, out_dir=out, n_train=n_train,
                             n_test=n_test, image_size=image_size, seed_icon=seed_icon, steps=steps,
                             batch_size=batch_size, lr=lr, weight_decay=wd, lora_rank=lora_rank, model_label=label,
                             label=f"{method}-{label.replace(':', '_').replace('/', '_')}",
                             num_generations=num_generations, **arm_kw)
            row["method"] = method
            rows.append(row)
table = tidy(rows)
write_table(table, out)
table.head()'''),
    ("md", f"## 2. Table\n\n{CI_NOTE}"),
    ("code", '''pivot = table.pivot_table(index="model", columns="method", values="accuracy", aggfunc="mean").reindex(
    [resolve_model(m)[1] for m in models])
print(pivot.round(3).to_string())'''),
    ("md", CHECK_NOTE),
    ("code", '''from art_lib.results import print_checks, table_checks

checks = {}
for label, g in table.groupby("model", sort=False):
    best_control = g[g["method"].str.startswith("control:")]["accuracy"].max()
    for method in methods:
        acc = g[g["method"] == method]["accuracy"].mean()
        checks[f"{label}: {method} beats the text-only and seed-image controls by >= 0.3"] = acc >= best_control + 0.3
# NBVAL_CHECK_OUTPUT
if all(str(m).startswith("toy:") for m in models):  # margins that only the toy world's known answers justify
    print_checks(checks)
else:
    print_checks(table_checks(table, [{"model": m, "method": a} for m in models
                                      for a in methods + ["control:text_only", "control:seed"]]))'''),
    ("md", "## 3. Figure"),
    ("code", '''import matplotlib.pyplot as plt
import seaborn as sns

fig, ax = plt.subplots(figsize=(6, 3.5))
sns.barplot(data=table, x="model", y="accuracy", hue="method", ax=ax, errorbar=None)
ax.set_ylim(0, 1); ax.set_title(f"{benchmark}: accuracy by model size")
save_figure(fig, out, "model_sizes")
plt.show()'''),
])

notebook("tab2_art_vs_lora", f"""# Table 2: ART vs LoRA vs soft prompt vs controls

Per benchmark and objective (SFT, and DAPO for ART and LoRA), with trainable-parameter counts and accuracy
with 95% intervals. The soft prompt (free embeddings in place of the image tokens) is the upper bound of
what the image channel could carry. `toy_mul` is never requested through a picture in the toy model's
pretraining: it is the honest test of whether pixels can carry what the vision tower never learned to convey.
Default run: about 2 minutes on a 2-core CPU.

Paper scale (GPU): `papermill tab2_art_vs_lora.ipynb out.ipynb -f params/tab2_art_vs_lora.paper.yaml`

{TOY_NOTE}""", '''
model = "toy:base"                              # model
benchmarks = ["toy_add", "toy_sub", "toy_max", "toy_tool", "toy_mul"]  # benchmarks
methods = ["art", "lora", "soft_prompt"]        # arms trained with SFT
rl_methods = ["art", "lora"]                    # arms also trained with the RL objective
rl_objective = "dapo"                           # grpo | dapo
rl_benchmarks = ["toy_add"]                     # benchmarks for the RL arms
claim_benchmarks = ["toy_add", "toy_sub", "toy_max", "toy_tool"]  # where the checks expect every SFT arm to beat the controls
steps = 300                 # SFT steps
rl_steps = 15               # RL steps
rl_warm_start_steps = 5     # SFT steps before RL (0: RL from the seed; a policy never rewarded gives RL nothing)
batch_size = 16             # prompts per step (SFT)
rl_batch_size = 8           # prompts per RL step
num_generations = 8         # completions per prompt (RL)
lr = {"art": 0.05, "soft_prompt": 0.3, "lora": 0.005}  # learning rate per method
weight_decay = {"art": 0.0, "soft_prompt": 0.0, "lora": 0.05}  # Adam L2 per method (LoRA memorises without it)
lora_rank = 8               # LoRA rank
image_size = 64             # artwork side
seed_icon = "math"          # seed icon
n_test = 40                 # test examples (None: all; the toy test split holds 40)
seeds = [0]                 # training seeds
''', [
    ("md", "## 1. Controls: the frozen model without any adaptation"),
    ("code", '''from art_lib.experiments import control_rows, resolve_model, run_arm, tidy

model_path, model_label = resolve_model(model)
rows = []
for b in benchmarks:
    rows += control_rows(model_path, b, n_test=n_test, image_size=image_size, seed_icon=seed_icon,
                         model_label=model_label, **runtime)
tidy(rows)[["benchmark", "method", "accuracy"]]'''),
    ("md", "## 2. SFT arms"),
    ("code", '''for b in benchmarks:
    for seed in seeds:
        for method in methods:
            row, _ = run_arm(model_path, b, method, objective="sft", seed=seed, out_dir=out, n_test=n_test,
                             image_size=image_size, seed_icon=seed_icon, steps=steps, batch_size=batch_size,
                             lr=lr[method], weight_decay=weight_decay[method], lora_rank=lora_rank,
                             model_label=model_label, **arm_kw)
            rows.append(row)
tidy(rows).tail(len(benchmarks) * len(methods) * len(seeds))[["benchmark", "method", "accuracy", "train_seconds"]]'''),
    ("md", """## 3. RL arms (objective `rl_objective`, DAPO by default)

With `rl_warm_start_steps > 0`, each RL arm first trains `rl_warm_start_steps` SFT steps, then continues
with the RL objective from there; the warm start alone is scored as its own row (`<method>-warm<N>`), so
the table shows what RL added over it. From the bare seed image the toy model never earns a reward, and
GRPO / DAPO then have nothing to learn from."""),
    ("code", '''for b in rl_benchmarks:
    for seed in seeds:
        for method in rl_methods:
            common = dict(seed=seed, out_dir=out, n_test=n_test, image_size=image_size, seed_icon=seed_icon,
                          lora_rank=lora_rank, model_label=model_label, **arm_kw)
            warm = {"steps": rl_warm_start_steps, "lr": lr[method], "batch_size": batch_size,
                    "weight_decay": weight_decay[method]}
            if rl_warm_start_steps:
                row, _ = run_arm(model_path, b, method, objective="sft", steps=rl_warm_start_steps, batch_size=batch_size,
                                 lr=lr[method], weight_decay=weight_decay[method],
                                 label=f"{method}-warm{rl_warm_start_steps}", **common)
                rows.append(row)
            row, _ = run_arm(model_path, b, method, objective=rl_objective, steps=rl_steps, batch_size=rl_batch_size,
                             num_generations=num_generations, temperature=1.0,
                             lr=lr[method], weight_decay=weight_decay[method],
                             warm_start=warm if rl_warm_start_steps else None, **common)
            rows.append(row)
table = tidy(rows)
write_table(table, out)
rl_rows = (table.objective == rl_objective) | table.method.str.endswith(f"-warm{rl_warm_start_steps}")
table[rl_rows][["benchmark", "method", "objective", "warm_start_steps", "accuracy"]]'''),
    ("md", f"## 4. Table\n\n{CI_NOTE}"),
    ("code", '''show = table.assign(arm=table["method"] + "/" + table["objective"])
pivot = show.pivot_table(index="arm", columns="benchmark", values="accuracy", aggfunc="mean")
params_col = show.groupby("arm")["trainable_params"].max()
print(pivot.join(params_col).round(3).to_string())'''),
    ("md", CHECK_NOTE),
    ("code", '''from art_lib.results import print_checks, table_checks

def acc(b, method, objective):
    return table[(table.benchmark == b) & (table.method == method) & (table.objective == objective)]["accuracy"].mean()

checks = {}
for b in claim_benchmarks:
    best_control = table[(table.benchmark == b) & table.method.str.startswith("control:")]["accuracy"].max()
    checks[f"{b}: every control scores <= 0.3"] = best_control <= 0.3
    for method in methods:
        checks[f"{b}: {method}/sft beats every control by >= 0.3"] = acc(b, method, "sft") >= best_control + 0.3
for b in rl_benchmarks:
    seed_acc = acc(b, "control:seed", "none")
    for method in rl_methods:
        checks[f"{b}: {method}/{rl_objective} beats the seed image by >= 0.3"] = acc(b, method, rl_objective) >= seed_acc + 0.3
expected = ([{"benchmark": b, "method": m, "objective": "sft"} for b in benchmarks for m in methods]
            + [{"benchmark": b, "method": m, "objective": rl_objective} for b in rl_benchmarks for m in rl_methods]
            + [{"benchmark": b, "method": f"control:{c}"} for b in benchmarks for c in ("text_only", "seed", "noise")])
# NBVAL_CHECK_OUTPUT
print_checks(checks if model_label.startswith("toy:") else table_checks(table, expected))'''),
    ("md", "## 5. Figure"),
    ("code", '''import matplotlib.pyplot as plt
import seaborn as sns

fig, ax = plt.subplots(figsize=(9, 3.8))
sns.barplot(data=show, x="benchmark", y="accuracy", hue="arm", ax=ax, errorbar=None)
ax.set_ylim(0, 1); ax.legend(fontsize=7, ncol=3); ax.set_title(f"{model_label}: accuracy per arm")
save_figure(fig, out, "art_vs_lora")
plt.show()'''),
])

notebook("tab3_dimensionality_alignment", f"""# Table 3: dimensionality alignment

An artwork whose sides are multiples of the model's `patch_size * merge_size` grid (and whose area is within
the processor's limits) reaches the model pixel for pixel; any other size is resized by the official
processor, so the pixels that were optimised are not the pixels the model sees. This notebook trains ART at
aligned and non-aligned sizes (the latter through a differentiable stand-in for the processor's resize),
reports what the processor does to each, the visual-token and trainable-pixel counts, accuracy from the PNG,
and the loss change after the 8-bit PNG round trip; and compares with LoRA ranks and the soft prompt of
comparable parameter counts. Default run: about 2 minutes on a 2-core CPU.

Paper scale (GPU): `papermill tab3_dimensionality_alignment.ipynb out.ipynb -f params/tab3_dimensionality_alignment.paper.yaml`

{TOY_NOTE}""", '''
model = "toy:base"             # model
benchmark = "toy_add"          # benchmark
sizes = [64, 96, 128, 80, 100]  # artwork sides (square); 80 and 100 are not multiples of 32
lora_ranks = [1, 4, 16]        # LoRA ranks to compare
steps = 300                    # optimiser steps
batch_size = 16                # prompts per step
lr_art = 0.05                  # learning rate for pixels
lr_soft = 0.3                  # learning rate for the soft prompt
lr_lora = 0.005                # learning rate for LoRA
lora_weight_decay = 0.05       # L2 on LoRA weights
seed_icon = "math"             # seed icon
n_test = 40                    # test examples (None: all; the toy test split holds 40)
seed = 0                       # training seed
''', [
    ("md", "## 1. What the official processor does with each size"),
    ("code", '''from art_lib.data import load_benchmark
from art_lib.experiments import (final_float_pixels, processor_resize, resize_to, resolve_model, run_arm,
                                 sft_eval_loss, tidy)
from art_lib.models import load_frozen
from art_lib.preprocess import num_visual_tokens, patch_geometry, valid_size

model_path, model_label = resolve_model(model)
frozen, processor = load_frozen(model_path, device=device, dtype=dtype)
geo = patch_geometry(processor.image_processor)
plan = []
for s in sizes:
    seen = processor_resize(s, s, processor)
    plan.append({"size": s, "aligned": valid_size(s, s, processor.image_processor), "processor_feeds": f"{seen[0]}x{seen[1]}",
                 "visual_tokens": num_visual_tokens(*seen, processor.image_processor), "trainable_pixels": 3 * s * s})
print("grid factor (patch_size * merge_size):", geo["factor"], "| min/max pixels:", geo["min_pixels"], geo["max_pixels"])
pd.DataFrame(plan)'''),
    ("md", "## 2. ART at each size; loss before and after the 8-bit PNG round trip"),
    ("code", '''test_examples = load_benchmark(benchmark, data_dir=data_dir, split="test", limit=n_test)
rows = []
for p in plan:
    s = p["size"]
    seen = tuple(int(v) for v in p["processor_feeds"].split("x"))
    eot = None if p["aligned"] else resize_to(seen)
    row, res = run_arm(model_path, benchmark, "art", seed=seed, out_dir=out, test_examples=test_examples,
                       image_size=s, seed_icon=seed_icon, steps=steps, batch_size=batch_size, lr=lr_art,
                       model_label=model_label, label=f"art-{s}px", eot=eot, **arm_kw)
    if p["aligned"]:
        from art_lib.pixel_prompt import PixelPrompt
        float_px = final_float_pixels(out, row)
        png_px = PixelPrompt.from_png(out / row["artifact"]).pixels()
        row["loss_float"] = sft_eval_loss(frozen, processor, test_examples, float_px)
        row["loss_png"] = sft_eval_loss(frozen, processor, test_examples, png_px)
    row.update({k: p[k] for k in ("size", "aligned", "processor_feeds", "visual_tokens")})
    rows.append(row)
tidy(rows)[["size", "aligned", "processor_feeds", "visual_tokens", "trainable_params", "accuracy"]]'''),
    ("md", "## 3. LoRA ranks and the soft prompt at comparable parameter counts"),
    ("code", '''for r in lora_ranks:
    row, _ = run_arm(model_path, benchmark, "lora", seed=seed, out_dir=out, test_examples=test_examples,
                     steps=steps, batch_size=batch_size, lr=lr_lora, weight_decay=lora_weight_decay, lora_rank=r,
                     model_label=model_label, label=f"lora-r{r}", **arm_kw)
    row["config"] = f"rank {r}"
    rows.append(row)
row, _ = run_arm(model_path, benchmark, "soft_prompt", seed=seed, out_dir=out, test_examples=test_examples,
                 image_size=sizes[0], seed_icon=seed_icon, steps=steps, batch_size=batch_size, lr=lr_soft,
                 model_label=model_label, **arm_kw)
row["config"] = f"{num_visual_tokens(sizes[0], sizes[0], processor.image_processor)} tokens"
rows.append(row)
table = tidy(rows)
write_table(table, out)'''),
    ("md", f"## 4. Table\n\n{CI_NOTE} `loss_png - loss_float` is the cost of the 8-bit round trip."),
    ("code", '''show = table.copy()
show["arm"] = show["method"]
show["png_loss_change"] = show["loss_png"] - show["loss_float"]
cols = ["arm", "size", "aligned", "processor_feeds", "visual_tokens", "config", "trainable_params", "accuracy",
        "png_loss_change"]
print(show[[c for c in cols if c in show]].round(4).to_string(index=False))'''),
    ("md", CHECK_NOTE),
    ("code", '''from art_lib.results import print_checks, table_checks

aligned = show[show.method.str.startswith("art-") & (show.aligned == True)]
unchanged = aligned["processor_feeds"] == aligned["size"].map(lambda s: f"{int(s)}x{int(s)}")
both = {"the 8-bit PNG round trip changes the loss by < 0.01": bool((aligned["png_loss_change"].abs() < 0.01).all()),
        "the processor feeds aligned sizes unchanged": bool(unchanged.all())}
expected = ([{"method": f"art-{s}px"} for s in sizes] + [{"method": f"lora-r{r}"} for r in lora_ranks]
            + [{"method": "soft_prompt"}])
# NBVAL_CHECK_OUTPUT
if model_label.startswith("toy:"):  # the accuracy margin only the toy world's known answers justify
    print_checks({"every aligned size reaches >= 0.7": bool((aligned["accuracy"] >= 0.7).all())} | both)
else:
    print_checks(table_checks(table, expected) | both)'''),
    ("md", "## 5. Figure: accuracy against trainable parameters"),
    ("code", '''import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3.5))
for method, g in show.groupby("method"):
    ax.scatter(g["trainable_params"], g["accuracy"], label=method)
ax.set_xscale("log"); ax.set_xlabel("trainable parameters"); ax.set_ylabel("accuracy"); ax.set_ylim(0, 1.05)
ax.legend(); ax.set_title(f"{model_label}, {benchmark}")
save_figure(fig, out, "alignment")
plt.show()'''),
])

notebook("fig_artworks", f"""# Figures 1 and 2: learned artworks and their evolution

Figure 1 of the paper shows artworks learned for Qwen3.5-0.8B with a DAPO loss from seed icons (maths,
brain, wrench); Figure 2 shows one artwork evolving over ToolMind training. Here: the learned artworks beside
their seeds, and one artwork's training checkpoints. Default run: about 2 minutes on a 2-core CPU.

Paper scale (GPU): `papermill fig_artworks.ipynb out.ipynb -f params/fig_artworks.paper.yaml`

{TOY_NOTE}""", '''
model = "toy:base"                                  # model
tasks = {"toy_add": "math", "toy_sub": "reasoning", "toy_tool": "tools"}  # benchmark -> seed icon
objective = "sft"           # sft | grpo | dapo (the paper's Figure 1 uses DAPO)
steps = 300                 # optimiser steps
batch_size = 16             # prompts per step
lr = 0.05                   # learning rate on pixels
image_size = 64             # artwork side
evolution_task = "toy_tool"  # the benchmark whose checkpoints are shown (Figure 2: ToolMind)
num_generations = 8         # completions per prompt (RL objectives)
checkpoint_every = 50       # steps between saved artworks (also the resume points; every one is kept)
n_test = 40                 # test examples
seed = 0                    # training seed
''', [
    ("md", "## 1. Train one artwork per task, saving checkpoints"),
    ("code", '''from art_lib.experiments import arm_checkpoints, arm_stem, resolve_model, run_arm, tidy
from art_lib.pixel_prompt import PixelPrompt

model_path, model_label = resolve_model(model)
rows, ckpts = [], {}
for task, icon in tasks.items():
    row, res = run_arm(model_path, task, "art", objective=objective, seed=seed, out_dir=out, n_test=n_test,
                       image_size=image_size, seed_icon=icon, steps=steps, batch_size=batch_size, lr=lr,
                       model_label=model_label, num_generations=num_generations, checkpoint_keep=10_000,
                       **(arm_kw | {"checkpoint_every": checkpoint_every}))
    row["seed_icon"] = icon
    rows.append(row)
    ckpts[task] = arm_checkpoints(out, arm_stem("art", task, objective, seed), checkpoint_every)
table = tidy(rows)
write_table(table, out)
print(table[["benchmark", "seed_icon", "accuracy"]].round(3).to_string(index=False))'''),
    ("md", CHECK_NOTE),
    ("code", '''from art_lib.results import print_checks, table_checks

# NBVAL_CHECK_OUTPUT
if model_label.startswith("toy:"):  # the accuracy margin only the toy world's known answers justify
    print_checks({f"{b}: the artwork reaches >= 0.7": a >= 0.7 for b, a in zip(table["benchmark"], table["accuracy"])})
else:
    print_checks(table_checks(table, [{"benchmark": t, "objective": objective} for t in tasks]))'''),
    ("md", "## 2. Figure 1: seeds and learned artworks"),
    ("code", '''import matplotlib.pyplot as plt

fig, ax = plt.subplots(2, len(tasks), figsize=(3 * len(tasks), 6))
for j, (task, icon) in enumerate(tasks.items()):
    art = table[table.benchmark == task].iloc[0]
    ax[0, j].imshow(PixelPrompt.from_icon(icon, image_size).to_pil()); ax[0, j].set_title(f"seed: {icon}")
    ax[1, j].imshow(PixelPrompt.from_png(out / art["artifact"]).to_pil())
    ax[1, j].set_title(f"{task}: acc {art['accuracy']:.2f}")
for a in ax.ravel(): a.axis("off")
save_figure(fig, out, "fig1_artworks")
plt.show()'''),
    ("md", "## 3. Figure 2: evolution over training"),
    ("code", '''frames = [(0, PixelPrompt.from_icon(tasks[evolution_task], image_size))]
for path in ckpts[evolution_task].checkpoints():
    step = int(path.name.split("-")[1])
    frames.append((step, PixelPrompt.from_png(next(path.glob("artifact*")))))
fig, ax = plt.subplots(1, len(frames), figsize=(2 * len(frames), 2.3))
for a, (step, art) in zip(ax, frames):
    a.imshow(art.to_pil()); a.set_title(f"step {step}"); a.axis("off")
save_figure(fig, out, "fig2_evolution")
plt.show()'''),
])

notebook("fig_style_tradeoff", f"""# Style against accuracy, and robustness to how images travel

Two trade-offs of the artwork as an image. (a) Style terms (SSIM and L2 to the seed icon) keep the artwork
recognisable; we sweep their weight and plot accuracy against SSIM-to-seed, every weight reported.
(b) A served image is not always the exact PNG: we evaluate an artwork trained plainly and one trained with
expectation over transformations (EOT: a differentiable JPEG, optionally resizes, colour jitter, shifts) after
real PIL re-encoding. Part (b) runs on two toy models: `toy:base`, whose task pictures are coloured glyphs (its
vision tower reads colour and coarse shape), and `toy:base-texture`, the same architecture pretrained on task
pictures that differ only by a fine 4x4-pixel texture (a tower that reads fine detail). JPEG
removes fine detail (4:2:0 chroma subsampling, coarse quantisation of high frequencies), so only the second
can show what robust training buys. Default run: about 6 minutes on a 2-core CPU.

Paper scale (GPU): `papermill fig_style_tradeoff.ipynb out.ipynb -f params/fig_style_tradeoff.paper.yaml`

{TOY_NOTE}""", '''
model = "toy:base"               # model
benchmark = "toy_add"            # benchmark
style_weights = [0.0, 1.0, 10.0]  # weight of (1 - SSIM) and of L2 to the seed
steps = 300                      # optimiser steps
batch_size = 16                  # prompts per step
lr = 0.05                        # learning rate on pixels
image_size = 64                  # artwork side
seed_icon = "math"               # seed icon
eot_transforms = ["jpeg"]         # robust training transformations (also: "resize", "jitter", "shift")
eot_p = 0.8                      # probability of a transformation per step
transport_runs = {"toy:base": ["toy_add"], "toy:base-texture": ["toy_add", "toy_sub", "toy_max", "toy_tool"]}  # (b): model -> benchmarks
transports = ["none", "jpeg95", "jpeg75", "jpeg50", "resize", "palette"]  # re-encodings evaluated
n_test = 40                      # test examples (None: all; the toy test split holds 40)
seed = 0                         # training seed
''', [
    ("md", "## 1. Style weight sweep"),
    ("code", '''from art_lib.experiments import resolve_model, run_arm, tidy
from art_lib.pixel_prompt import PixelPrompt
from art_lib.style import ssim

model_path, model_label = resolve_model(model)
seed_px = PixelPrompt.from_icon(seed_icon, image_size).pixels()
rows = []
for w in style_weights:
    row, res = run_arm(model_path, benchmark, "art", seed=seed, out_dir=out, n_test=n_test, image_size=image_size,
                       seed_icon=seed_icon, steps=steps, batch_size=batch_size, lr=lr, model_label=model_label,
                       label=f"art-style{w:g}", style_ssim=w, style_l2=w, **arm_kw)
    png = PixelPrompt.from_png(out / row["artifact"]).pixels()
    row.update({"experiment": "style", "style_weight": w, "ssim_to_seed": float(ssim(png, seed_px))})
    rows.append(row)
tidy(rows)[["style_weight", "ssim_to_seed", "accuracy"]]'''),
    ("md", "## 2. Plain vs robust (EOT) training, evaluated after re-encoding"),
    ("code", '''from art_lib.data import load_benchmark
from art_lib.experiments import generation_budget
from art_lib.models import load_frozen
from art_lib.transforms import EOT
from art_lib.transport import evaluate_transports

transport_rows = []
for tm, benches in transport_runs.items():
    tm_path, tm_label = resolve_model(tm)
    tag = tm_label.split(":")[-1].replace("/", "_")
    frozen, processor = load_frozen(tm_path, device=device, dtype=dtype)
    for bench in benches:
        test_examples = load_benchmark(bench, data_dir=data_dir, split="test", limit=n_test)
        for name, eot in [("plain", None), ("robust", EOT(eot_transforms, p=eot_p, seed=seed))]:
            row, _ = run_arm(tm_path, bench, "art", seed=seed, out_dir=out, test_examples=test_examples,
                             image_size=image_size, seed_icon=seed_icon, steps=steps, batch_size=batch_size, lr=lr,
                             model_label=tm_label, label=f"art-{name}-{tag}", eot=eot, **arm_kw)
            df = evaluate_transports(frozen, processor, test_examples, out / row["artifact"], bench, kinds=transports,
                                     out_dir=out / f"transport-{name}-{tag}",
                                     max_new_tokens=max_new_tokens or generation_budget(bench))
            for r in df.to_dict("records"):
                transport_rows.append({**row, "experiment": "transport", "training": name, "transport": r["kind"],
                                       "accuracy": r["accuracy"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                                       "mean_abs_change": r["mean_abs_change"]})
table = tidy(rows + transport_rows)
write_table(table, out)
tr = table[table.experiment == "transport"]
acc = tr.pivot_table(index=["model", "benchmark", "transport"], columns="training", values="accuracy")
print(acc.round(3).to_string())'''),
    ("md", CHECK_NOTE),
    ("code", '''from art_lib.results import print_checks, table_checks

st = table[table.experiment == "style"].sort_values("style_weight")
jpeg75 = tr[tr.transport == "jpeg75"].pivot_table(index=["model", "benchmark"], columns="training", values="accuracy")
texture = jpeg75.loc[[m for m in jpeg75.index.get_level_values(0).unique() if m.endswith("-texture")]]
# NBVAL_CHECK_OUTPUT
unstyled = float(st[st.style_weight == 0]["ssim_to_seed"].mean())
print_checks({f"style weight {w:g} gives a higher SSIM to the seed than weight 0": v > unstyled
              for w, v in zip(st["style_weight"], st["ssim_to_seed"]) if w > 0})
if len(texture):  # the toy whose vision tower reads fine detail
    print_checks({"texture toy, after jpeg75: the robust artworks keep more accuracy than the plain ones "
                  "(mean over benchmarks) by >= 0.1": texture["robust"].mean() >= texture["plain"].mean() + 0.1})
if not model_label.startswith("toy:"):
    print_checks(table_checks(table, [{"experiment": "style", "style_weight": w} for w in style_weights]
                              + [{"experiment": "transport", "benchmark": b, "training": t, "transport": k}
                                 for bs in transport_runs.values() for b in bs for t in ("plain", "robust")
                                 for k in transports]))'''),
    ("md", "Per model and benchmark (reported, not CI-checked: which artworks JPEG breaks depends on the toy weights "
           "and on the CPU that trains them)."),
    ("code", '''print_checks({f"{m} {b}: after jpeg75 the robust artwork keeps more accuracy than the plain one": r["robust"] > r["plain"]
              for (m, b), r in jpeg75.iterrows()})'''),
    ("md", "## 3. Figures"),
    ("code", '''import matplotlib.pyplot as plt
import seaborn as sns

st = table[table.experiment == "style"]
fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
ax[0].plot(st["ssim_to_seed"], st["accuracy"], "o-")
for _, r in st.iterrows():
    ax[0].annotate(f"w={r['style_weight']:g}", (r["ssim_to_seed"], r["accuracy"]))
ax[0].set_xlabel("SSIM to seed (PNG)"); ax[0].set_ylabel("accuracy"); ax[0].set_ylim(0, 1.05)
sns.barplot(data=tr.assign(arm=tr["model"].str.split(":").str[-1] + " " + tr["training"]), x="transport",
            y="accuracy", hue="arm", ax=ax[1], order=transports, errorbar=None)
ax[1].set_ylim(0, 1.05); ax[1].tick_params(axis="x", rotation=30)
ax[1].set_title("accuracy after re-encoding (mean over benchmarks)")
save_figure(fig, out, "style_tradeoff")
plt.show()'''),
])
