#!/usr/bin/env python3
"""Checks that llama.cpp loads a GGUF written by `warden synth` and agrees with warden.

Test tooling, not part of the product and not run by CI (it needs llama.cpp,
which `pip install llama-cpp-python` builds from source in ~15 minutes on two
cores). For each prompt it compares

  * the prompt's token ids: llama.cpp's tokenizer, built from the GGUF's
    `tokenizer.ggml.*` metadata, against warden's (`generate --json`);
  * greedy continuations: llama.cpp's argmax token by token against
    `warden generate --temperature 0`.

Usage:
    python3 runtime/tests/llama_cpp/check.py WARDEN_BINARY MODEL.gguf [--tokens N]

Exits 0 when everything agrees, 1 otherwise (printing the first difference).
"""

import argparse
import json
import subprocess
import sys

import numpy as np
from llama_cpp import Llama

PROMPTS = [
    "Where is the Post model defined?",
    "<|im_start|>user\nList the files in blog/<|im_end|>\n<|im_start|>assistant\n",
    "def post_list(request):\n    return 42  # ünïcödé ✓ 你好",
    "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"blog/models.py\"}}\n</tool_call>",
]


def warden(binary, model, prompt, tokens):
    out = subprocess.run(
        [binary, "generate", "--model", model, "--prompt", prompt,
         "--max-tokens", str(tokens), "--temperature", "0", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    j = json.loads(out)
    return j["prompt_tokens"], j["tokens"]


def llama_greedy(llm, prompt_ids, tokens):
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    for _ in range(tokens):
        logits = np.asarray(llm.scores[llm.n_tokens - 1])
        tok = int(np.argmax(logits))
        out.append(tok)
        if tok in (151643, 151645):  # <|endoftext|>, <|im_end|>: warden stops there too
            break
        llm.eval([tok])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("warden")
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=24)
    a = ap.parse_args()
    # f32 KV cache (llama.cpp defaults to f16), as warden keeps it on the CPU.
    llm = Llama(model_path=a.model, n_ctx=512, n_threads=2, logits_all=True, verbose=False,
                type_k=0, type_v=0)
    print(f"llama.cpp loaded {a.model}: n_vocab={llm.n_vocab()} n_embd={llm.n_embd()}")
    ok = True
    for prompt in PROMPTS:
        w_prompt, w_gen = warden(a.warden, a.model, prompt, a.tokens)
        l_prompt = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        if l_prompt != w_prompt:
            print(f"TOKENIZATION DIFFERS for {prompt!r}:\n  llama.cpp {l_prompt}\n  warden    {w_prompt}")
            ok = False
            continue
        l_gen = llama_greedy(llm, l_prompt, len(w_gen))
        same = next((i for i, (x, y) in enumerate(zip(l_gen, w_gen)) if x != y), None)
        if same is None and len(l_gen) == len(w_gen):
            print(f"ok: {len(l_prompt)} prompt tokens, {len(w_gen)} greedy tokens equal  ({prompt[:40]!r})")
        else:
            # Random weights give near-flat logits; say how close the call was.
            llm.reset()
            llm.eval(l_prompt + l_gen[:same])
            logits = np.asarray(llm.scores[llm.n_tokens - 1])
            gap = logits[l_gen[same]] - logits[w_gen[same]]
            spread = logits.max() - logits.min()
            print(f"GREEDY DIFFERS at token {same} for {prompt!r}: llama.cpp's logit for its "
                  f"choice is {gap:.2e} above warden's choice (logits span {spread:.2f})"
                  f"\n  llama.cpp {l_gen}\n  warden    {w_gen}")
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
