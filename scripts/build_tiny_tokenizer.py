"""Train the byte-level BPE vocabulary of the tiny test tokenizer (run once; output is committed).

Corpus: the questions of GSM8K's train split (MIT licence, github.com/openai/grade-school-math),
pre-tokenised exactly as Qwen3.5's tokenizer does. Special tokens are added at load time by
`art_lib.models.tiny_tokenizer`, after this vocabulary, in Qwen's order.

    python scripts/build_tiny_tokenizer.py ../shared/data/gsm8k/train.jsonl
"""

import json
import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX

VOCAB_SIZE = 1024


def main(train_jsonl: str, out: str = "art_lib/assets/tiny_tokenizer") -> None:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    alphabet = sorted(bytes_to_unicode().values())
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, initial_alphabet=alphabet, min_frequency=2, show_progress=False
    )
    lines = [json.loads(line)["question"] for line in open(train_jsonl)]
    tok.train_from_iterator(lines, trainer)
    model = json.loads(tok.to_str())["model"]
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False, indent=0))
    (Path(out) / "merges.txt").write_text("\n".join(" ".join(m) for m in model["merges"]) + "\n")
    print(f"wrote {len(model['vocab'])} tokens, {len(model['merges'])} merges to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
