"""Rebuild this BFCL v4 subset from a full copy of the BFCL data folder.

    python tests/data/bfcl/make_subset.py /work/shared/data/bfcl

Keeps, per category file, the first FIRST_N rows plus every row whose function
docs use one of the tricky parameter types (dict, tuple, any, array of dict /
array of array) or whose ground truth starts with "" (optional) or an empty
list; rows are copied verbatim (same line text), in file order.
"""

import json
import sys
from pathlib import Path

FIRST_N = 20
FILES = [
    "BFCL_v4_simple_python.json",
    "BFCL_v4_multiple.json",
    "BFCL_v4_parallel.json",
    "BFCL_v4_parallel_multiple.json",
    "BFCL_v4_irrelevance.json",
]


def tricky(row: dict, truth: list | None) -> bool:
    for fn in row["function"]:
        for p in fn["parameters"]["properties"].values():
            if p.get("type") in ("dict", "tuple", "any"):
                return True
            if p.get("type") == "array" and (p.get("items") or {}).get("type") in ("dict", "array"):
                return True
    for call in truth or []:
        for params in call.values():
            for accs in params.values():
                if accs and (accs[0] == "" or accs[0] == []):
                    return True
    return False


def main(src: str) -> None:
    src_dir, dst_dir = Path(src), Path(__file__).parent
    (dst_dir / "possible_answer").mkdir(exist_ok=True)
    for name in FILES:
        lines = (src_dir / name).read_text(encoding="utf-8").splitlines()
        answer_file = src_dir / "possible_answer" / name
        answers = {}
        if answer_file.exists():
            for line in answer_file.read_text(encoding="utf-8").splitlines():
                answers[json.loads(line)["id"]] = line
        keep = []
        for i, line in enumerate(lines):
            row = json.loads(line)
            truth = json.loads(answers[row["id"]])["ground_truth"] if row["id"] in answers else None
            if i < FIRST_N or tricky(row, truth):
                keep.append((row["id"], line))
        (dst_dir / name).write_text("".join(line + "\n" for _, line in keep), encoding="utf-8")
        if answers:
            out = "".join(answers[rid] + "\n" for rid, _ in keep)
            (dst_dir / "possible_answer" / name).write_text(out, encoding="utf-8")
        print(name, len(keep))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/bfcl")
