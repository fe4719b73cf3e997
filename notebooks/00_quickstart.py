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
# # Quick start: train an artwork, save it, score it from the PNG
#
# Loads a frozen model, draws a seed icon, optimises only its pixels for a few steps (SFT), saves the 8-bit
# PNG, evaluates the model **from that PNG** through the official processor, and shows it. Under 3 minutes on
# a 2-core CPU (the toy models are shipped pretrained: nothing else runs first).
#
# Other scales: `papermill 00_quickstart.ipynb out.ipynb -p model Qwen/Qwen3.5-0.8B -p benchmark gsm8k ...`
#
# **Toy world.** At the default parameters every number here comes from the kit's own tiny Qwen3.5-architecture model, pretrained on synthetic tasks and shipped with the kit (`art_lib.toy`), not from a real checkpoint: it checks that the method and the code work end to end, it is not a reproduction of the paper's numbers. The `model` column says `toy:<size>` or the checkpoint id.

# %% tags=["parameters"]
from typing import Optional, Union  # the parameter types below (`papermill --help-notebook` lists them)
model: str = "toy:base"                       # "toy:<size>" (shipped with art_lib) or a checkpoint id / folder
benchmark: str = "toy_add"                    # a registered benchmark (art_lib.registry.benchmark_names())
method: str = "art"                           # art | lora | soft_prompt
objective: str = "sft"                        # sft | grpo | dapo
steps: int = 300                              # optimiser steps
batch_size: int = 16                          # prompts per step
lr: float = 0.05                              # Adam learning rate on pixels in [0, 1]
num_generations: int = 8                      # completions per prompt (RL objectives)
image_size: int = 64                          # artwork side in pixels (the toy processor's minimum; 256 for Qwen3.5)
seed_icon: str = "math"                       # math | reasoning | tools
n_test: Optional[int] = 40                    # test examples (None: all; the toy test split holds 40 distinct prompts)
seed: int = 0                                 # training seed
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
STEM = '00_quickstart'
import pandas as pd
from IPython.display import display

from art_lib.results import save_figure, write_table
from art_lib.session import start

# Checks the parameters (a typo or a wrong type papermill injected: an error naming it), sets the CPU threads,
# opens results/<STEM> (nb.out) and builds what every arm shares: nb.runtime (device, dtype, data, engines, memory
# settings) and nb.checkpointing (results folder, checkpoints, resume).
nb = start(globals(), STEM)

# %% [markdown]
# ## 1. Model and data

# %%
from art_lib.data import load_benchmark
from art_lib.experiments import resolve_model

model_path, model_label = resolve_model(model)
train_examples = load_benchmark(benchmark, data_dir=data_dir, split="train", seed=seed)
test_examples = load_benchmark(benchmark, data_dir=data_dir, split="test", limit=n_test)
print(model_label, "|", len(train_examples), "train /", len(test_examples), "test examples")
pd.DataFrame(test_examples[:3])[["id", "prompt", "answer"]]

# %% [markdown]
# ## 2. Train (only the pixels change) and evaluate from the saved PNG

# %%
from art_lib.experiments import Arm, control_rows, run_arm, tidy

arm = Arm(model_path, benchmark, method, objective=objective, seed=seed, model_label=model_label,
          train_examples=train_examples, test_examples=test_examples, image_size=image_size, seed_icon=seed_icon,
          max_new_tokens=max_new_tokens, reward=reward,
          train=dict(steps=steps, batch_size=batch_size, lr=lr, num_generations=num_generations,
                     overlong_filter=overlong_filter))
row, res = run_arm(arm, nb.runtime, nb.checkpointing)
if res is not None:  # None: finished in an earlier run (resume), its row comes from arms.jsonl
    display(res.history[["step", "loss", "grad_norm"]].tail())

# %%
rows = [row] + control_rows(model_path, benchmark, n_test=n_test, image_size=image_size, seed_icon=seed_icon,
                           seed=seed, model_label=model_label, max_new_tokens=max_new_tokens, out_dir=nb.out,
                           resume=resume, runtime=nb.runtime)
table = tidy(rows)
write_table(table, nb.out)
display(table[["method", "accuracy", "ci_low", "ci_high"]].round(3))

# %% [markdown]
# The cell below states what the table should show, with margins; the CI re-runs the notebook and compares these lines, not the digits above them (the exact accuracies depend on the CPU that trains and generates; `run_info.json` records the toy weights hash and the CPU).

# %%
from art_lib import claims
from art_lib.results import print_checks, table_checks

# NBVAL_CHECK_OUTPUT
if model_label.startswith("toy:"):  # thresholds only the toy world's known answers justify (art_lib.claims)
    print_checks(claims.quickstart(table, method, objective))
else:
    print_checks(table_checks(table, [{"method": m} for m in [method, "control:text_only", "control:seed"]]))

# %% [markdown]
# ## 3. The artwork

# %%
import matplotlib.pyplot as plt
from art_lib.pixel_prompt import PixelPrompt
from art_lib.plots import accuracy_bars

if method == "art":
    learned = PixelPrompt.from_png(nb.out / row["artifact"])
    history = res.history if res is not None else pd.DataFrame({"step": [], "loss": []})
    fig, ax = plt.subplots(1, 4, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1, 1, 1.3, 1.5]})
    ax[0].imshow(PixelPrompt.from_icon(seed_icon, image_size).to_pil()); ax[0].set_title("seed")
    ax[1].imshow(learned.to_pil()); ax[1].set_title(f"learned ({steps} steps)")
    ax[2].semilogy(history["step"], history["loss"]); ax[2].set_title("training loss"); ax[2].set_xlabel("step")
    accuracy_bars(ax[3], table, x="method"); ax[3].set_title("accuracy from the PNG")
    for a in ax[:2]: a.axis("off")
    fig.tight_layout()
    save_figure(fig, nb.out, "quickstart")
    plt.show()

# %%
nb.finish()  # run_info.json: parameters, commit, packages, device, wall time
print("wrote", sorted(p.name for p in nb.out.iterdir()))
