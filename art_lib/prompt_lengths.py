"""How long a benchmark's prompts and SFT targets are, in tokens, measured from its data for `--plan`.

A prompt is what the trainer and the evaluation feed the model: the chat template rendered with the example's
system turn (ToolMind: every tool's JSON schema), history and question, plus the artwork's visual tokens. The
plan bounds a run with the LONGEST prompt and target of the sample it reads (the notebook's local `data_dir`,
else the kit's samples in tests/data), counted with the model's own tokenizer when one loads from local files,
else with `token_bound`, a conservative count from characters. Neither is a download.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data"
#: Where the kit's own small samples of each benchmark are (dry runs read them too; `reproduce.DRY_RUN`).
SAMPLE_DATA = {
    "gsm8k": str(SAMPLES / "gsm8k" / "test.jsonl"),
    "svamp": str(SAMPLES / "svamp"),
    "toolmind": str(SAMPLES / "toolmind"),
    "bfcl": str(SAMPLES / "bfcl"),
}
#: Rows read per split: enough for a maximum over a few hundred prompts, never a whole 370k-row ToolMind.
MEASURE_LIMIT = 300
#: When a benchmark has no sample at all: prompt and target tokens assumed (printed as "assumed").
ASSUMED_PROMPT, ASSUMED_TARGET = 1024, 512

IMAGE_PAD = "<|image_pad|>"
CHAR_RULE = "1 token per 2 ASCII characters, 1 per digit, 2 per other character"


def token_bound(text: str) -> int:
    """An upper bound on a byte-level BPE's token count of `text` without its tokenizer.

    Qwen's tokenizer splits every digit into its own token and merges English words and JSON punctuation into
    tokens of ~3-5 characters; a non-ASCII character is at most a couple of byte tokens. So: ASCII letters and
    punctuation at 1 token per 2 characters, 1 per digit, 2 per other character (`CHAR_RULE`).
    """
    digits = sum(c.isdigit() and c.isascii() for c in text)
    other = sum(not c.isascii() for c in text)
    ascii_rest = len(text) - digits - other
    return (ascii_rest + 1) // 2 + digits + 2 * other


@dataclass(frozen=True)
class PromptLength:
    """Longest prompt (text tokens, without the image's visual tokens) and SFT target of a benchmark sample."""

    prompt: int
    target: int
    method: str  # "tokenizer", "characters (<rule>)" or "assumed"
    source: str  # the data the maximum was taken over
    examples: int

    def describe(self) -> str:
        src = f"max over {self.examples} examples of {self.source}" if self.examples else self.source
        return f"prompt <= {self.prompt} + visual tokens, target <= {self.target} tokens ({self.method}; {src})"


def _local_source(benchmark: str, data_dir) -> tuple[object, str] | None:
    """(`load_benchmark`'s data_dir, a label) for the local data a notebook names for `benchmark` (its `data_dir`:
    one folder or a {benchmark: path or loader arguments} dict), else the kit's sample, else None (never the hub)."""
    from .data import looks_local

    chosen = data_dir.get(benchmark) if isinstance(data_dir, dict) else data_dir
    path = chosen.get("source") if isinstance(chosen, dict) else chosen
    if path is not None and looks_local(path) and Path(str(path)).expanduser().exists():
        return (data_dir, _short(str(path)))
    if benchmark in SAMPLE_DATA:
        return (SAMPLE_DATA, _short(SAMPLE_DATA[benchmark]))
    return None


def _examples(benchmark: str, data_dir) -> list[dict]:
    import warnings

    from .data import DataWarning, load_benchmark

    out = []
    for split in ("train", "test"):
        try:
            with warnings.catch_warnings():  # a skipped malformed row is the loader's business, not the plan's
                warnings.simplefilter("ignore", DataWarning)
                out += load_benchmark(benchmark, data_dir=data_dir, split=split, limit=MEASURE_LIMIT)
        except (ValueError, FileNotFoundError, KeyError):
            continue  # a sample without this split (GSM8K's test file): the other split still counts
    return out


@functools.cache
def _local_tokenizer(model: str):
    """The model's own tokenizer when it loads from local files (a checkpoint folder or the hub cache), else None."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError, KeyError):
        return None


@functools.cache
def _template_renderer(model: str):
    """A processor that renders the model's chat template (the published one for a Qwen3.5 size)."""
    from .models import tiny_processor

    name = Path(model).name
    size = name.split("-", 1)[1] if name.lower().startswith("qwen3.5-") else "0.8B"
    return tiny_processor("qwen3_5", size)


def _render(model: str, example: dict, tokenizer) -> str:
    from .prompting import example_messages

    renderer = tokenizer if tokenizer is not None and tokenizer.chat_template else _template_renderer(model)
    return renderer.apply_chat_template(
        example_messages(example, {"type": "image"}),
        tools=(example.get("meta") or {}).get("tools"),
        add_generation_prompt=True,
        tokenize=False,
        enable_thinking=False,
    )


def measure(benchmark: str, model: str, data_dir=None) -> PromptLength:
    """The longest rendered prompt and SFT target of `benchmark`'s local sample, in tokens (see module doc)."""
    import json

    return _measure(benchmark, model, json.dumps(data_dir, sort_keys=True, default=str))


@functools.cache
def _measure(benchmark: str, model: str, data_dir_json: str) -> PromptLength:
    import json

    from .registry import default_sft_target

    found = _local_source(benchmark, json.loads(data_dir_json))
    examples = _examples(benchmark, found[0]) if found else []
    if not examples:
        return PromptLength(ASSUMED_PROMPT, ASSUMED_TARGET, "assumed", "no local sample", 0)
    tok = _local_tokenizer(model)

    def count(text: str) -> int:
        if tok is None:
            return token_bound(text)
        return len(tok(text, add_special_tokens=False).input_ids)

    prompts = [_render(model, e, tok).replace(IMAGE_PAD, "") for e in examples]
    prompt = max(count(t) for t in prompts)
    target = max(count(default_sft_target(e)) + 1 for e in examples)  # + the end-of-turn token
    method = "tokenizer" if tok is not None else f"characters: {CHAR_RULE}"
    return PromptLength(prompt, target, method, found[1], len(examples))


def _short(source: str) -> str:
    path = Path(source)
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


@functools.cache
def visual_tokens(model: str, height: int, width: int) -> int:
    """Visual tokens of an h x w artwork with the model's image processor (resized first when not a valid size)."""
    from transformers import AutoImageProcessor

    from .models import reference_dir
    from .preprocess import num_visual_tokens

    name = Path(model).name
    if name.lower().startswith("qwen3.5-"):
        folder = reference_dir("qwen3_5", name.split("-", 1)[1])
    else:
        folder = Path(model)
    return num_visual_tokens(height, width, AutoImageProcessor.from_pretrained(folder), resize=True)
