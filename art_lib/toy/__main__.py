"""CLI of the toy world: `python -m art_lib.toy {pretrain,verify,eval,list}`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..models import load_frozen
from .benchmarks import evaluate_toy, picture_kind, toy_controls
from .checkpoints import shipped_names, toy_checkpoint, toy_info
from .pretrain import pretrain_toy_model
from .recipe import DEFAULT_SIZE, parse_spec


def _summary(path: Path) -> dict:
    return {k: v for k, v in json.loads((path / "toy_info.json").read_text()).items() if k != "recipe"}


def _parse_share(text: str | None) -> dict | None:
    """Parse `--share`: "mul=2,add=1" -> {"mul": 2.0, "add": 1.0}; None -> None (the recipe's default)."""
    if text is None:
        return None
    share = {}
    for item in filter(None, text.split(",")):
        task, sep, value = item.partition("=")
        try:
            share[task.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"--share: expected task=number items, got {item!r}")
    return share


def verify(name: str, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Pretrain shipped toy model `name` afresh (its recipe, seed, threads) and compare the weights hashes."""
    info = toy_info(name)
    size, pictures = parse_spec(name)
    rec = info["recipe"]
    with tempfile.TemporaryDirectory() as tmp:
        path = pretrain_toy_model(
            size,
            info["seed"],
            rec["steps"],
            out_dir=out_dir or Path(tmp) / name,
            progress=progress,
            threads=info["threads"],
            pictures=pictures,
            share=rec.get("task_share", {}),
            **rec["train"],
        )
        fresh = json.loads((path / "toy_info.json").read_text())
    return {
        "name": name,
        "shipped": info["weights_hash"],
        "fresh": fresh["weights_hash"],
        "same": fresh["weights_hash"] == info["weights_hash"],
        "shipped_cpu": info.get("cpu"),
        "fresh_cpu": fresh.get("cpu"),
        "seconds": fresh["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (verify: 1 when the weights differ)."""
    parser = argparse.ArgumentParser(prog="python -m art_lib.toy", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain", help="pretrain a toy model from scratch into a folder")
    p.add_argument("--name", default=DEFAULT_SIZE, help="toy name: a size (small, base, large, xl) or size-texture")
    p.add_argument("--out-dir", required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=None, help="default: the recipe's (recipe.SEEDS, else 0)")
    p.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    p.add_argument("--threads", type=int, default=None, help="default: the recipe's (1)")
    p.add_argument(
        "--share", default=None, help="relative task shares, e.g. mul=2 (default: the size's recipe.TASK_SHARE)"
    )
    p.add_argument("--eval", action="store_true", help="then print the greedy accuracies per task and cue")
    v = sub.add_parser("verify", help="pretrain a shipped toy model afresh and compare its weights hash")
    v.add_argument("name", nargs="?", default=DEFAULT_SIZE)
    v.add_argument("--out-dir", default=None, help="keep the fresh checkpoint here")
    e = sub.add_parser("eval", help="greedy accuracy of a checkpoint (folder or shipped toy name) per task and cue")
    e.add_argument("model")
    e.add_argument("--n", type=int, default=None)
    e.add_argument("--dtype", default="auto", help="float32, bfloat16 or auto (models.load_frozen)")
    e.add_argument(
        "--controls", action="store_true", help="also the notebooks' controls per task (seed icon, noise, random text)"
    )
    e.add_argument("--seed-icon", default="math", help="seed icon of the seed control")
    sub.add_parser("list", help="the shipped toy checkpoints and their hashes")
    args = parser.parse_args(argv)

    if args.cmd == "pretrain":
        size, pictures = parse_spec(args.name)
        path = pretrain_toy_model(
            size,
            args.seed,
            args.steps,
            out_dir=args.out_dir,
            threads=args.threads,
            pictures=pictures,
            share=_parse_share(args.share),
        )
        print(json.dumps(_summary(path)))
        print(path)
        if args.eval:
            print(json.dumps(evaluate_toy(path)))
    elif args.cmd == "verify":
        res = verify(args.name, args.out_dir)
        print(json.dumps(res))
        return 0 if res["same"] else 1
    elif args.cmd == "eval":
        path = Path(args.model) if Path(args.model).exists() else toy_checkpoint(args.model)
        model, processor = load_frozen(path, dtype=args.dtype)
        print(json.dumps(evaluate_toy(model, processor, n=args.n, pictures=picture_kind(path))))
        if args.controls:
            print(json.dumps({"controls": toy_controls(model, processor, n=args.n, seed_icon=args.seed_icon)}))
    elif args.cmd == "list":
        for name in shipped_names():
            print(name, json.dumps(_summary(toy_checkpoint(name))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
