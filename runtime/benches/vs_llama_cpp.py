#!/usr/bin/env python3
"""warden and llama.cpp on the same GGUF file, side by side, interleaved.

Test tooling, not part of the product and not run by CI (it needs
llama-cpp-python, which builds llama.cpp from source in ~15 minutes on two
cores: CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python==0.3.36).

After one untimed warm-up on each side, each repeat runs `warden bench`
once (its own process, which warms up too: load time is not counted) and then llama.cpp on a prompt of the same length, same threads:
prefill = prompt tokens / time of one batched eval, decode = generated
tokens / time of one-token evals (each computing the full logits, as warden's
do). Prints the medians of both, the ratios, and warden's bandwidth limit
(weight bytes per token / measured read bandwidth, from `bench --bandwidth`).

Usage:
    python3 runtime/benches/vs_llama_cpp.py WARDEN_BINARY MODEL.gguf \
        [--threads 2] [--prompt 128] [--gen 64] [--repeat 3] [--json]
"""

import argparse
import json
import random
import statistics
import subprocess
import time

from llama_cpp import Llama


def warden_run(binary, model, args, bandwidth):
    cmd = [binary, "bench", "--model", model, "--prompt-tokens", str(args.prompt),
           "--gen-tokens", str(args.gen), "--repeat", "1", "--threads", str(args.threads),
           "--json"]
    if bandwidth:
        cmd.append("--bandwidth")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def llama_run(llm, args, rng):
    vocab = min(llm.n_vocab(), 151_643)
    prompt = [rng.randrange(vocab) for _ in range(args.prompt)]
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    prefill = args.prompt / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(args.gen):
        llm.eval([rng.randrange(vocab)])
    decode = args.gen / (time.perf_counter() - t)
    return prefill, decode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("warden")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    llm = Llama(model_path=args.model, n_ctx=args.prompt + args.gen + 16,
                n_batch=max(args.prompt, 32), n_ubatch=max(args.prompt, 32),
                n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    rng = random.Random(0)
    llama_run(llm, args, rng)  # untimed warm-up, as `warden bench` does
    w_pre, w_dec, l_pre, l_dec = [], [], [], []
    limit = None
    for i in range(args.repeat):
        w = warden_run(args.warden, args.model, args, bandwidth=(i == 0))
        if i == 0:
            limit = w
        w_pre.append(w["prefill_tok_s"])
        w_dec.append(w["decode_tok_s"])
        p, d = llama_run(llm, args, rng)
        l_pre.append(p)
        l_dec.append(d)
    med = statistics.median
    res = {
        "model": args.model, "threads": args.threads, "prompt_tokens": args.prompt,
        "gen_tokens": args.gen, "repeat": args.repeat,
        "warden_prefill_tok_s": med(w_pre), "warden_decode_tok_s": med(w_dec),
        "llama_cpp_prefill_tok_s": med(l_pre), "llama_cpp_decode_tok_s": med(l_dec),
        "prefill_ratio": med(w_pre) / med(l_pre), "decode_ratio": med(w_dec) / med(l_dec),
        "weight_bytes_per_token": limit["weight_bytes_per_token"],
        "read_gb_s": limit["read_gb_s"],
        "bandwidth_limit_tok_s": limit["bandwidth_limit_tok_s"],
    }
    if args.json:
        print(json.dumps(res))
        return
    lim = res["bandwidth_limit_tok_s"]
    print(f"model {args.model}, {args.threads} threads, prompt {args.prompt}, decode {args.gen}, median of {args.repeat}")
    print(f"prefill  warden {res['warden_prefill_tok_s']:7.1f}  llama.cpp {res['llama_cpp_prefill_tok_s']:7.1f} tok/s  {res['prefill_ratio']:.2f}x")
    print(f"decode   warden {res['warden_decode_tok_s']:7.1f}  llama.cpp {res['llama_cpp_decode_tok_s']:7.1f} tok/s  {res['decode_ratio']:.2f}x")
    print(f"limit    {res['weight_bytes_per_token'] / 1e6:.0f} MB/token at {res['read_gb_s']:.1f} GB/s = {lim:.1f} tok/s: "
          f"warden {100 * res['warden_decode_tok_s'] / lim:.0f} %, llama.cpp {100 * res['llama_cpp_decode_tok_s'] / lim:.0f} %")


if __name__ == "__main__":
    main()
