# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 1: ART across model sizes
#
# ART (pixels only) against the text-only model and LoRA, for each model size, on one benchmark.
# The paper reports this for several Qwen3.5 sizes; its numbers are not available to us.
# Default run: about 2 minutes on a 2-core CPU.
#
# Paper scale (GPU): `papermill tab1_model_sizes.ipynb out.ipynb -f params/tab1_model_sizes.paper.yaml`
#
# **Toy world.** At the default parameters every number here comes from the kit's own tiny Qwen3.5-architecture model, pretrained on synthetic tasks and shipped with the kit (`art_lib.toy`), not from a real checkpoint: it checks that the method and the code work end to end, it is not a reproduction of the paper's numbers. The `model` column says `toy:<size>` or the checkpoint id.

# %% tags=["parameters"]
from typing import Optional, Union  # the parameter types below (`papermill --help-notebook` lists them)
models: list[str] = ["toy:small", "toy:base", "toy:large"]  # model sizes to compare
benchmark: str = "toy_add"                    # benchmark name (art_lib.registry.benchmark_names())
methods: list[str] = ["art", "lora"]          # trained arms
objective: str = "sft"                        # sft | grpo | dapo
steps: int = 300                              # optimiser steps per arm
batch_size: int = 16                          # prompts per step
lr_art: float = 0.05                          # learning rate for pixels
lr_lora: float = 0.005                        # learning rate for LoRA weights
lora_weight_decay: float = 0.05               # L2 on LoRA weights (without it LoRA memorises the 60 toy training pairs)
lora_rank: int = 8                            # LoRA rank
num_generations: int = 8                      # completions per prompt (RL objectives)
image_size: int = 64                          # artwork side
seed_icon: str = "math"                       # seed icon
n_train: Optional[int] = None                 # training examples (None: the whole train split)
n_test: Optional[int] = 40                    # test examples (None: all; the toy test split holds 40)
seeds: list[int] = [0]                        # training seeds
device: str = "auto"                          # "auto": CUDA when present, else CPU; or "cuda", "cpu" (CUDA asked, none there: error)
dtype: str = "auto"                           # frozen model: "auto" (bfloat16 on CUDA, float32 on CPU), "bfloat16", "float32"
data_dir: Union[str, dict, None] = None       # None: the loaders' hub defaults; a folder of <benchmark>/ folders; {benchmark: source}
max_new_tokens: Optional[int] = None          # generation budget of evaluation and RL rollouts (None: the benchmark's)
eval_batch_size: int = 8                      # prompts per generate call when evaluating
micro_batch_size: Optional[int] = None        # rows per forward/backward pass in training (None: a whole step at once)
generation_batch_size: Optional[int] = None   # prompts per generate call in RL rollouts (None: a whole step at once)
gradient_checkpointing: bool = False          # recompute activations in the backward pass: less memory, slower
checkpoint_every: int = 0                     # save each arm every N steps under <results>/checkpoints/<arm>/ (0: never)
resume: bool = False                          # continue from checkpoints; skip arms and evaluations finished earlier (arms.jsonl, evals.jsonl)
reward: Optional[str] = None                  # None: the benchmark's scorer; "dry_run" forces informative groups (dry runs only)
overlong_filter: Optional[bool] = None        # RL: drop truncated completions from the loss (None: on for DAPO; off in dry runs)
shared_prefix: bool = False                   # ART / soft prompt: run the tokens every row starts with once per step (same loss and gradients, faster)
rollout_engine: str = "hf"                    # RL rollouts: "hf" (transformers generate), "vllm" (offline vLLM beside the model), "auto" (vLLM on CUDA if installed)
eval_engine: str = "hf"                       # evaluation: "hf", "vllm" or "auto" (a soft prompt is always generated with HF)
vllm_memory_fraction: float = 0.3             # share of the GPU vLLM takes beside training (weights + KV cache); CPU: VLLM_CPU_KVCACHE_SPACE
progress: bool = False                        # a progress bar per arm: steps done, time left
cpu_threads: int = 1                          # torch CPU threads (1 keeps CPU runs bit-reproducible)
results_tag: str = ""                         # "" for default runs; e.g. "paper" for paper-scale runs

# %%
STEM = 'tab1_model_sizes'
import pandas as pd
from IPython.display import display

from art_lib.results import save_figure, write_table
from art_lib.session import start

# Checks the parameters (a typo or a wrong type papermill injected: an error naming it), sets the CPU threads,
# opens results/<STEM> (nb.out) and builds what every arm shares: nb.runtime (device, dtype, data, engines, memory
# settings) and nb.checkpointing (results folder, checkpoints, resume).
nb = start(globals(), STEM)

# %% [markdown]
# ## 1. Train and evaluate every (size, method, seed)

# %%
from art_lib.experiments import Arm, control_rows, resolve_model, run_arm, tidy

rows = []
for m in models:
    path, label = resolve_model(m)
    rows += control_rows(path, benchmark, which=("text_only", "seed"), n_test=n_test, image_size=image_size,
                         seed_icon=seed_icon, model_label=label, max_new_tokens=max_new_tokens, out_dir=nb.out,
                         resume=resume, runtime=nb.runtime)
    for seed in seeds:
        for method in methods:
            lr = lr_lora if method == "lora" else lr_art
            wd = lora_weight_decay if method == "lora" else 0.0
            arm = Arm(path, benchmark, method, objective=objective, seed=seed, model_label=label,
                      label=f"{method}-{label.replace(':', '_').replace('/', '_')}", n_train=n_train, n_test=n_test,
                      image_size=image_size, seed_icon=seed_icon, max_new_tokens=max_new_tokens, reward=reward,
                      train=dict(steps=steps, batch_size=batch_size, lr=lr, weight_decay=wd, lora_rank=lora_rank,
                                 num_generations=num_generations, overlong_filter=overlong_filter))
            row, _ = run_arm(arm, nb.runtime, nb.checkpointing)
            row["method"] = method
            rows.append(row)
table = tidy(rows)
write_table(table, nb.out)
table.head()

# %% [markdown]
# ## 2. Table
#
# Accuracy is greedy, scored from the saved artifact (PNG / adapter), with a 95% Wilson interval.

# %%
pivot = table.pivot_table(index="model", columns="method", values="accuracy", aggfunc="mean").reindex(
    [resolve_model(m)[1] for m in models])
display(pivot.round(3))

# %% [markdown]
# The cell below states what the table should show, with margins; the CI re-runs the notebook and compares these lines, not the digits above them (the exact accuracies depend on the CPU that trains and generates; `run_info.json` records the toy weights hash and the CPU).

# %%
from art_lib import claims
from art_lib.results import print_checks, table_checks

# NBVAL_CHECK_OUTPUT
if all(str(m).startswith("toy:") for m in models):  # thresholds only the toy world's known answers justify
    print_checks(claims.model_sizes(table, methods))
else:
    print_checks(table_checks(table, [{"model": m, "method": a} for m in models
                                      for a in methods + ["control:text_only", "control:seed"]]))

# %% [markdown]
# ## 3. Figure

# %%
import matplotlib.pyplot as plt
from art_lib.plots import accuracy_bars

bars = table.assign(method=table["method"] + (" seed " + table["seed"].astype(str) if len(seeds) > 1 else ""))
fig, ax = plt.subplots(figsize=(7, 3.5))
accuracy_bars(ax, bars, x="model", hue="method", order=[resolve_model(m)[1] for m in models])
ax.set_title(f"{benchmark}: accuracy by model size")
save_figure(fig, nb.out, "model_sizes")
plt.show()

# %%
nb.finish()  # run_info.json: parameters, commit, packages, device, wall time
print("wrote", sorted(p.name for p in nb.out.iterdir()))
