#!/usr/bin/env python3
"""Records what llama.cpp does with a GGUF, for warden's tests to compare against.

Test tooling, not part of the product. llama.cpp (`llama-cpp-python==0.3.36`,
built with the CMAKE_ARGS in docs/models.md) takes ~15 minutes to build on two
cores, so CI does not build it: this script is run once per model file and
its output, a JSON file of llama.cpp's answers, is committed beside it.
`runtime/tests/real_model.rs` then checks warden against that file:

  * tokenization: llama.cpp's ids for a corpus of code, prose, numbers,
    unicode and whitespace runs (plain text, and chat text with special
    tokens parsed);
  * greedy decoding: llama.cpp's argmax continuation of each prompt, token
    by token, with the top-2 logit gap at every step (so a test can tell a
    real divergence from a near-tie);
  * log-probabilities: llama.cpp's log p(token | prefix) for every token of
    a fixed text, and its perplexity.

The model file's sha256 is recorded; the tests refuse a fixture recorded
on another file.

Usage:
    python3 runtime/tests/llama_cpp/reference.py MODEL.gguf OUT.json [--tokens 128]
"""

import argparse
import hashlib
import json
import sys

import numpy as np
from llama_cpp import Llama

# Tokenization corpus: each kind of text a tokenizer gets wrong first.
CORPUS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "def post_list(request):\n    return render(request, 'blog/list.html', {'posts': Post.objects.all()})\n",
    "fn main() {\n\tlet x: Vec<u32> = (0..10).map(|i| i * i).collect();\n\tprintln!(\"{x:?}\");\n}",
    "1234567890 3.14159 -42 1e-5 0xDEADBEEF 1,000,000 2026-12-07T15:24:52Z",
    "    indented    with     runs of     spaces\n\n\n\nand blank lines\r\nand CRLF",
    "\t\ttabs\tand\u00a0non-breaking\u2003spaces",
    "ünïcödé naïve café résumé Ångström",
    "你好，世界！这是一个测试。",
    "こんにちは世界。カタカナとひらがな。",
    "Привет, мир! Это тест.",
    "emoji 🎉🚀✨ and symbols → ← ≤ ≥ ∑ ∫ √",
    "I'm sure you'll see they've done it, didn't they? It's what we'd do.",
    "HTTP/1.1 200 OK\nContent-Type: application/json\n\n{\"ok\": true, \"items\": [1, 2, 3]}",
    "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"blog/models.py\"}}\n</tool_call>",
    "SELECT id, name FROM users WHERE age >= 21 ORDER BY name DESC LIMIT 10;",
    "   leading spaces and trailing spaces   ",
    "a\nb\n\nc\n\n\nd",
    "'quoted' \"double\" `backtick` ```fenced```",
    "x=1;y=2;z=x+y//comment/*block*/",
    "URL: https://example.com/path?query=1&other=two#frag",
    "Mixed 123abc abc123 a1b2c3 ABC DEF ghi",
    "",
    " ",
    "\n",
]

# Chat-formatted text with special tokens, as a session renders it.
CHAT = [
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhere is the Post model defined?<|im_end|>\n<|im_start|>assistant\n",
]

# Greedy prompts: varied, most in the model's chat format.
def chat(user, system="You are a helpful AI assistant named SmolLM, trained by Hugging Face"):
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")

PROMPTS = [
    chat("What is the capital of France?"),
    chat("Write a Python function that returns the n-th Fibonacci number."),
    chat("Explain what a hash chain is in two sentences."),
    chat("List three prime numbers greater than 100."),
    chat("Translate 'good morning' into French, Spanish and German."),
    chat("What does the Unix command `grep -rn TODO src/` do?"),
    chat("Write a haiku about the sea."),
    chat("How many legs does a spider have?"),
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "1, 1, 2, 3, 5, 8, 13,",
    chat("What is 12 times 12?"),
    chat("Name the largest planet in the solar system."),
    chat("Give me a one-line Python expression that reverses a string s."),
    chat("Who wrote 'Romeo and Juliet'?"),
    "import numpy as np\n\ndef mean(xs):\n    return",
    "The three primary colors are",
]

# A fixed text for log-probabilities (prose, code and numbers).
TEXT = (
    "The Model Context Protocol lets editors reach tools through a server. "
    "A sandbox gives each call its own memory, time and output limits, and a log "
    "records every call in a hash chain so that nobody can change it unseen.\n\n"
    "def read_file(path: str) -> str:\n"
    "    with open(path, encoding='utf-8') as f:\n"
    "        return f.read()\n\n"
    "In 2024 the model was trained on 2 trillion tokens; it has 135 million "
    "parameters, 30 layers and a vocabulary of 49,152 tokens.\n\n"
    "Photosynthesis is the process by which green plants use sunlight to turn water "
    "and carbon dioxide into glucose and oxygen. It takes place in the chloroplasts, "
    "whose chlorophyll absorbs mostly red and blue light and reflects green, which is "
    "why leaves look green. The oxygen we breathe is a by-product of this reaction.\n\n"
    "The French Revolution began in 1789 and ended in the late 1790s with the rise of "
    "Napoleon Bonaparte. It overthrew the monarchy, established a republic, and led to "
    "a period of political turmoil that shaped the history of Europe for a century.\n\n"
    "class Stack:\n"
    "    def __init__(self):\n"
    "        self.items = []\n\n"
    "    def push(self, item):\n"
    "        self.items.append(item)\n\n"
    "    def pop(self):\n"
    "        return self.items.pop()\n\n"
    "    def is_empty(self):\n"
    "        return len(self.items) == 0\n\n"
    "To make a cup of tea, boil fresh water, pour it over the tea leaves or a tea bag, "
    "and let it steep for three to five minutes before removing the leaves. Add milk, "
    "sugar or lemon to taste."
)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def greedy(llm, prompt_ids, tokens, stops):
    llm.reset()
    llm.eval(prompt_ids)
    out, gaps = [], []
    for _ in range(tokens):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        top2 = np.argsort(logits)[-2:]
        tok = int(top2[1])
        out.append(tok)
        gaps.append(float(logits[top2[1]] - logits[top2[0]]))
        if tok in stops:
            break
        llm.eval([tok])
    return out, gaps


def logprobs(llm, ids):
    llm.reset()
    llm.eval(ids)
    lp = []
    for i in range(len(ids) - 1):
        logits = np.asarray(llm.scores[i], dtype=np.float64)
        m = logits.max()
        lse = m + np.log(np.exp(logits - m).sum())
        lp.append(float(logits[ids[i + 1]] - lse))
    return lp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--tokens", type=int, default=128)
    a = ap.parse_args()
    # f32 KV cache (llama.cpp defaults to f16), as warden keeps it on the CPU.
    llm = Llama(model_path=a.model, n_ctx=2048, n_threads=2, n_batch=512, logits_all=True,
                verbose=False, type_k=0, type_v=0)
    vocab = llm.n_vocab()
    stops = [i for i in range(vocab)
             if llm.detokenize([i], special=True).decode("utf-8", "replace")
             in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")]
    out = {
        "model_sha256": sha256(a.model),
        "llama_cpp_python": __import__("llama_cpp").__version__,
        "stops": stops,
        "tokenize": [
            {"text": t, "special": False,
             "ids": llm.tokenize(t.encode(), add_bos=False, special=False)}
            for t in CORPUS
        ] + [
            {"text": t, "special": True,
             "ids": llm.tokenize(t.encode(), add_bos=False, special=True)}
            for t in CHAT
        ],
        "greedy": [],
    }
    for p in PROMPTS:
        ids = llm.tokenize(p.encode(), add_bos=False, special=True)
        toks, gaps = greedy(llm, ids, a.tokens, stops)
        out["greedy"].append({"prompt": p, "prompt_ids": ids, "tokens": toks, "gaps": gaps})
        print(f"greedy: {len(toks)} tokens for {p[:50]!r}: "
              f"{llm.detokenize(toks).decode('utf-8', 'replace')[:60]!r}", file=sys.stderr)
    ids = llm.tokenize(TEXT.encode(), add_bos=False, special=False)
    lp = logprobs(llm, ids)
    out["logprobs"] = {"text": TEXT, "ids": ids, "logprobs": lp,
                       "perplexity": float(np.exp(-np.mean(lp)))}
    print(f"perplexity {out['logprobs']['perplexity']:.4f} over {len(lp)} tokens", file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
