"""How far the approximated token counts are from real tokenizers, per text. Prints a Markdown table.

    pip download --no-deps llama-models==0.3.0 -d /tmp/wheels
    python bench/token_approx.py /tmp/wheels/llama_models-0.3.0-py3-none-any.whl

The Llama 3 and Llama 4 tokenizers (tiktoken-format ``tokenizer.model`` files in Meta's llama-models
package) are the reference for Ollama models. The texts are tests/data/llama_token_counts.json, whose
stored counts this script reproduces (and checks) before comparing.
"""

from __future__ import annotations

import base64
import json
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiktoken

from asgi_aigw.runtime import count_text_tokens
from asgi_aigw.runtime.tokens import get_encoding

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "llama_token_counts.json"
# pat_str of llama_models/llama3/tokenizer.py; Llama 4 uses o200k_base's pattern
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def load(wheel: zipfile.ZipFile, member: str, pattern: str) -> tiktoken.Encoding:
    ranks = {}
    for line in wheel.read(member).splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(name=member, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})


def main() -> None:
    wheel = zipfile.ZipFile(sys.argv[1])
    llama3 = load(wheel, "llama_models/llama3/tokenizer.model", LLAMA3_PATTERN)
    llama4 = load(wheel, "llama_models/llama4/tokenizer.model", get_encoding("o200k_base")._pat_str)
    data = json.loads(DATA.read_text(encoding="utf-8"))["texts"]
    print("| text | o200k | estimate (ollama, x1.35) | Llama 3 | Llama 4 | est/L3 | est/L4 |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for name, sample in data.items():
        text = sample["text"]
        l3, l4 = len(llama3.encode_ordinary(text)), len(llama4.encode_ordinary(text))
        assert (l3, l4) == (sample["llama3"], sample["llama4"]), name
        base = len(get_encoding("o200k_base").encode_ordinary(text))
        estimate = count_text_tokens(text, "ollama/llama3")
        ratios += [estimate / l3, estimate / l4]
        print(f"| {name} | {base} | {estimate} | {l3} | {l4} | {estimate / l3:.2f} | {estimate / l4:.2f} |")
    print(f"\nestimate / reference: min {min(ratios):.2f}, max {max(ratios):.2f}")


if __name__ == "__main__":
    main()
