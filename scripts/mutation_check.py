"""Mutation check of the kit's core: do the fast tests notice a plausible one-line mistake?

Each mutation below is (name, file, exact original snippet, replacement, tests to run). For each one the script
copies the repository's tracked files (as they are in the working tree) to a temporary folder, applies the
mutation there, runs the listed tests with `-x` from that copy (with the main `.venv`'s python, the copy's
`art_lib` first on the path, checked), and prints a table `mutation | file | caught by (first failing test) |
seconds`. The working tree is never modified. A snippet that is not found exactly once fails loudly (the source
moved on: update the mutation). The exit status is non-zero when any mutation survives (or a baseline test
fails without a mutation).

    .venv/bin/python scripts/mutation_check.py            # baseline, then every mutation (about 20 minutes)
    .venv/bin/python scripts/mutation_check.py --list     # names, files, tests
    .venv/bin/python scripts/mutation_check.py --only advantage-sign --only clip-epsilon-swapped

Not part of CI (scripts/test.sh): run it after changing the core or its tests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
TIMEOUT_S = 600  # per mutation; the slowest one takes well under 2 minutes on a quiet machine


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: node ids, files, or "-k" expressions


T_TRAINER = "tests/test_trainer_regressions.py"
T_LOSSES = "tests/test_losses.py"
T_MICRO_RL = "tests/test_micro_batch.py::test_micro_batched_rl_equals_the_unchunked_step"

MUTATIONS = [
    # ---------------------------------------------------------------- the trainer step (steps.rl_step)
    Mutation(
        "rl-micro-batch-weight-rows",
        "art_lib/steps.py",
        "losses.micro_batch_weight(loss_type, b - a, len(batch), chunk_tokens, tokens)",
        "losses.micro_batch_weight(loss_type, b - a, len(batch), b - a, len(batch))",
        (T_MICRO_RL,),
    ),
    Mutation(
        "advantage-sign",
        "art_lib/steps.py",
        "adv = losses.group_advantages(rewards, G, scale=c.scale_rewards).to(device)",
        "adv = -losses.group_advantages(rewards, G, scale=c.scale_rewards).to(device)",
        (T_TRAINER, "-k", "raises_the_logprob"),
    ),
    Mutation(
        "policy-logps-without-temperature",
        "art_lib/steps.py",
        "model, sub, image, image_embeds=leaf, temperature=c.temperature, shared_prefix=shared",
        "model, sub, image, image_embeds=leaf, shared_prefix=shared",
        (T_TRAINER, "-k", "on_policy"),
    ),
    Mutation(
        "rl-old-logps-rows-misaligned",
        "art_lib/steps.py",
        "            old[a:b],\n",
        "            old[: b - a],\n",
        (T_MICRO_RL,),
    ),
    Mutation(
        "dapo-tie-leaves-the-token-count-all-reduce",
        "art_lib/steps.py",
        "        if skipped:\n            _join_token_count(accelerator, c)\n",
        "        if skipped:\n",
        ("tests/test_multiprocess_dapo.py",),
    ),
    # ---------------------------------------------------------------- a notebook's runtime reaches its arms
    Mutation(
        "notebook-memory-settings-dropped",
        "art_lib/session.py",
        "memory={k: p[k] for k in RESULT_NEUTRAL}",
        "memory={}",
        ("tests/test_notebooks.py", "-k", "setup_call"),
    ),
    # ---------------------------------------------------------------- losses
    Mutation(
        "kl-bias-correction-default",
        "art_lib/losses.py",
        "kl_bias_correction: bool = True,",
        "kl_bias_correction: bool = False,",
        (T_TRAINER, "-k", "trls_default or bias_corrected"),
    ),
    Mutation(
        "clip-epsilon-swapped",
        "art_lib/losses.py",
        "torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)",
        "torch.clamp(ratio, 1 - epsilon_high, 1 + epsilon_low)",
        (T_LOSSES,),
    ),
    Mutation(
        "advantage-std-dropped",
        "art_lib/losses.py",
        "return advantages / (std + eps)  # (N,)",
        "return advantages  # (N,)",
        (T_LOSSES,),
    ),
    Mutation(
        "dapo-sequence-level-aggregation",
        "art_lib/losses.py",
        "loss = masked_sum / normaliser.to(masked_sum).clamp(min=1.0)",
        "loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()",
        (T_LOSSES,),
    ),
    Mutation(
        "group-size-reshape-transposed",
        "art_lib/losses.py",
        "grouped = rewards.view(-1, group_size)  # (G, group_size)\n    baseline",
        "grouped = rewards.view(group_size, -1).T  # (G, group_size)\n    baseline",
        (T_LOSSES,),
    ),
    Mutation(
        "k3-kl-offset-dropped",
        "art_lib/losses.py",
        "per_token_kl = torch.exp(ref_log_ratio) - ref_log_ratio - 1",
        "per_token_kl = torch.exp(ref_log_ratio) - ref_log_ratio",
        (T_LOSSES,),
    ),
    Mutation(
        "sft-mask-not-shifted",
        "art_lib/forward.py",
        "return hidden[:, P - 1 : P + C - 1]",
        "return hidden[:, P : P + C]",
        ("tests/test_forward.py", "-k", "sft_nll"),
    ),
    Mutation(
        "dynamic-sampling-keeps-flat-groups",
        "art_lib/losses.py",
        "return grouped.amax(dim=1) != grouped.amin(dim=1)",
        "return grouped.amax(dim=1) >= grouped.amin(dim=1)",
        (T_LOSSES,),
    ),
    Mutation(
        "overlong-filter-inverted",
        "art_lib/losses.py",
        "keep = (~truncated.bool()).unsqueeze(1)",
        "keep = truncated.bool().unsqueeze(1)",
        (T_LOSSES,),
    ),
    # ---------------------------------------------------------------- rollout
    Mutation(
        "old-logps-without-temperature",
        "art_lib/rollout.py",
        "kw = dict(image_embeds=image_embeds, temperature=temperature, micro_batch_size=micro_batch_size)",
        "kw = dict(image_embeds=image_embeds, micro_batch_size=micro_batch_size)",
        (T_TRAINER, "-k", "old_logprobs"),
    ),
    Mutation(
        "sampling-temperature-ignored",
        "art_lib/rollout.py",
        "temperature=temperature if do_sample else None,",
        "temperature=1.0 if do_sample else None,",
        (T_TRAINER, "-k", "sampling_temperature"),
    ),
    Mutation(
        "eos-token-outside-the-mask",
        "art_lib/rollout.py",
        "[None] <= first[:, None]).long()",
        "[None] < first[:, None]).long()",
        ("tests/test_rollout.py",),
    ),
    # ---------------------------------------------------------------- shared prefix
    Mutation(
        "shared-prefix-one-token-too-long",
        "art_lib/prefix.py",
        "n = int((batch.prompt_length - starts).min()) - 1",
        "n = int((batch.prompt_length - starts).min())",
        ("tests/test_shared_prefix.py",),
    ),
    # ---------------------------------------------------------------- pixels and preprocessing
    Mutation(
        "patch-order-swapped",
        "art_lib/preprocess.py",
        "x = x.permute(1, 4, 2, 5, 0, 3, 6)",
        "x = x.permute(4, 1, 2, 5, 0, 3, 6)",
        ("tests/test_preprocess.py", "-k", "matches_processor_exactly"),
    ),
    Mutation(
        "nearest-size-rounds-down-only",
        "art_lib/preprocess.py",
        "return {max(f, math.floor(x / f) * f), max(f, math.ceil(x / f) * f)}",
        "return {max(f, math.floor(x / f) * f)}",
        ("tests/test_preprocess.py", "tests/test_mutation_guards.py", "-k", "nearest or valid_size"),
    ),
    Mutation(
        "straight-through-clamp-dropped",
        "art_lib/pixel_prompt.py",
        "return _StraightThroughClamp.apply(x)",
        "return x.clamp(0.0, 1.0)",
        ("tests/test_pixel_prompt.py",),
    ),
    Mutation(
        "projection-after-step-dropped",
        "art_lib/pixel_prompt.py",
        "self.raw.clamp_(0.0, 1.0)",
        "self.raw.clamp_(-1.0, 2.0)",
        ("tests/test_pixel_prompt.py",),
    ),
    Mutation(
        # (np.round instead, half to even, is an equivalent mutant: the only exact half of a float32 in [0, 1]
        # times 255 is 0.5 * 255 = 127.5, which both round to 128.)
        "png-8bit-truncates",
        "art_lib/pixel_prompt.py",
        "np.floor(x * 255.0 + 0.5).astype(np.uint8)",
        "np.floor(x * 255.0).astype(np.uint8)",
        ("tests/test_pixel_prompt.py",),
    ),
    # ---------------------------------------------------------------- scoring and checkpoints
    Mutation(
        "answer-parser-off-by-one",
        "art_lib/rewards.py",
        "body[marks[-1].end() :]",
        "body[marks[-1].end() + 1 :]",
        ("tests/test_rewards.py", "-k", "tricky_math or extract_answer"),
    ),
    Mutation(
        "answer-parser-first-mark",
        "art_lib/rewards.py",
        "body[marks[-1].end() :]",
        "body[marks[0].end() :]",
        ("tests/test_rewards.py", "-k", "tricky_math or extract_answer"),
    ),
    Mutation(
        "wilson-z-90-percent",
        "art_lib/scoring.py",
        "def wilson_interval(k: int, n: int, z: float = 1.96)",
        "def wilson_interval(k: int, n: int, z: float = 1.645)",
        ("tests/test_evaluate.py", "-k", "wilson"),
    ),
    Mutation(
        "checkpoint-checksum-skipped",
        "art_lib/checkpoint.py",
        "if _sha256(f) != sha256:",
        "if False:",
        ("tests/test_checkpoint.py", "tests/test_mutation_guards.py"),
    ),
]


def tracked_copy(dest: Path) -> None:
    """The working tree's version of every tracked file, copied under `dest` (deleted files skipped)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in out.decode().split("\0"):
        src = ROOT / rel
        if rel and src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def env_for(copy: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    env.pop("ART_VLLM_TIER", None)
    return env


def check_imports_copy(copy: Path) -> None:
    """The tests must import the copy's art_lib, not the editable install of the working tree."""
    code = "import art_lib, sys; print(art_lib.__file__)"
    found = subprocess.run(
        [str(PYTHON), "-c", code], cwd=copy, env=env_for(copy), check=True, capture_output=True, text=True
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"mutation_check: the copy imports art_lib from {found}, not from {copy}: mutations would be unseen")


def apply(copy: Path, m: Mutation) -> str:
    """Apply `m` in the copy; returns the file's original text (to restore). Fails loudly on a stale snippet."""
    path = copy / m.file
    text = path.read_text()
    count = text.count(m.old)
    if count != 1:
        where = "not found" if count == 0 else f"found {count} times"
        sys.exit(f"mutation_check: {m.name}: snippet {m.old!r} {where} in {m.file}; update the mutation")
    path.write_text(text.replace(m.old, m.new))
    return text


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    """(pytest exit code, first failing test or '', seconds)."""
    cmd = [str(PYTHON), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env_for(copy), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, "", time.monotonic() - start
    seconds = time.monotonic() - start
    first = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", proc.stdout, re.MULTILINE)
    return proc.returncode, first.group(1) if first else "", seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the selected tests")
    args = ap.parse_args()
    names = [m.name for m in MUTATIONS]
    if len(set(names)) != len(names):
        sys.exit("mutation_check: duplicate mutation names")
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:36} {m.file:24} {' '.join(m.tests)}")
        return 0
    unknown = set(args.only or []) - set(names)
    if unknown:
        sys.exit(f"mutation_check: unknown mutation(s) {sorted(unknown)}; see --list")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    with tempfile.TemporaryDirectory(prefix="art-mutation-") as tmp:
        copy = Path(tmp)
        tracked_copy(copy)
        check_imports_copy(copy)
        for m in chosen:  # every snippet is checked before any test runs
            (copy / m.file).write_text(apply(copy, m))
        if not args.no_baseline:
            for tests in dict.fromkeys(m.tests for m in chosen):
                rc, first, seconds = run_tests(copy, tests)
                if rc != 0:
                    print(f"baseline fails without a mutation: {' '.join(tests)} ({first or f'exit {rc}'})")
                    return 2
            print(f"baseline: the selected tests pass unmutated ({len(set(m.tests for m in chosen))} selections)")
        survivors = report(copy, chosen)
    if survivors:
        print(f"\n{len(survivors)} mutation(s) survived: {', '.join(survivors)}")
        return 1
    print(f"\nall {len(chosen)} mutations caught")
    return 0


def report(copy: Path, chosen: list[Mutation]) -> list[str]:
    """Run each mutation's tests in the copy, print the table row by row; returns the survivors' names."""
    print("| mutation | file | caught by (first failing test) | seconds |\n|---|---|---|---|", flush=True)
    survivors = []
    for m in chosen:
        original = apply(copy, m)
        try:
            rc, first, seconds = run_tests(copy, m.tests)
        finally:
            (copy / m.file).write_text(original)
        if rc == -1:
            caught = f"SURVIVED? timed out after {TIMEOUT_S} s"
        elif rc in (1, 2) and first:
            caught = first
        else:
            caught = f"SURVIVED (pytest exit {rc})"
        if not caught.startswith("tests/"):
            survivors.append(m.name)
        print(f"| {m.name} | {m.file} | {caught} | {seconds:.0f} |", flush=True)
    return survivors


if __name__ == "__main__":
    sys.exit(main())
