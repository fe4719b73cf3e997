"""Run every notebook with papermill and collect its outputs under results/<stem>/.

    python -m art_lib.reproduce            # default (toy-world, CPU) parameters
    python -m art_lib.reproduce paper      # notebooks/params/<stem>.paper.yaml (GPU, real checkpoints)
    python -m art_lib.reproduce --only tab2_art_vs_lora

A notebook that fails makes the command fail (after the others have run), so no table is silently missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The kit's notebooks in run order (quickstart first, figures last)."""
    found = sorted(folder.glob("*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks found in {folder}")
    return found


def run(scale: str = "default", only: list[str] | None = None, kernel: str = "python3") -> int:
    """Execute the notebooks; return the number that failed."""
    import papermill as pm

    failed = []
    for nb in notebooks():
        if only and nb.stem not in only:
            continue
        params = {}
        if scale != "default":
            pfile = nb.parent / "params" / f"{nb.stem}.{scale}.yaml"
            if not pfile.exists():
                print(f"[skip] {nb.stem}: no {pfile.name}", file=sys.stderr)
                continue
            params = yaml.safe_load(pfile.read_text()) or {}
        # The notebook writes its tables and figures into results/<stem>[.<results_tag>]/ itself;
        # the executed copy goes next to them.
        out_dir = ROOT / "results" / (nb.stem if scale == "default" else f"{nb.stem}.{params.get('results_tag', scale)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        t = time.time()
        print(f"[run] {nb.name} -> {out_dir}", flush=True)
        try:
            pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params, kernel_name=kernel,
                                cwd=str(nb.parent), progress_bar=False)
            print(f"[ok] {nb.stem} in {time.time() - t:.0f} s", flush=True)
        except Exception as e:  # keep going so every table is attempted, then fail loudly
            failed.append(nb.stem)
            print(f"[FAILED] {nb.stem}: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr, flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scale", nargs="?", default="default", help="'default' or a params suffix such as 'paper'")
    ap.add_argument("--only", nargs="*", help="notebook stems to run")
    args = ap.parse_args(argv)
    sys.exit(1 if run(args.scale, args.only) else 0)


if __name__ == "__main__":
    main()
