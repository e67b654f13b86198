"""Load benchmark: `warden serve` against llama-cpp-python's server
(`llama-cpp-python[server]`, test tooling) on the same GGUF, driven by the
official `openai` client over loopback. Both servers stay up; rounds
alternate between them (warden, llama, warden, llama, ...) so that the
machine's noise falls on both. Each round sends REQUESTS chat requests
from CONCURRENCY clients at once (greedy, MAX_TOKENS each) and records
each request's latency; the report gives p50/p99 latency, requests/s and
completion tokens/s per server.

    python3 runtime/benches/serve_load.py --model FILE.gguf [--warden target/release/warden]
        [--requests 16] [--concurrency 4] [--max-tokens 32] [--rounds 2]
        [--threads 2] [--parallel 2] [--json OUT]

Bounded: every request has a timeout, every round a fixed count.
"""

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import openai

PROMPTS = [
    "Name three prime numbers.",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List two colours of the rainbow.",
    "Say hello in Spanish.",
    "What does a compiler do?",
    "Give a synonym for quick.",
    "How many legs has a spider?",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, seconds=300):
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"the server exited: {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.5)
    sys.exit(f"{url} did not come up in {seconds} s")


def run_round(base, model, requests, concurrency, max_tokens):
    client = openai.OpenAI(base_url=base, api_key="bench", max_retries=0, timeout=600)

    def one(i):
        t0 = time.perf_counter()
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            max_tokens=max_tokens,
            temperature=0,
        )
        return time.perf_counter() - t0, r.usage.completion_tokens

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    return wall, results


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--warden", default="target/release/warden")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()

    wport, lport = free_port(), free_port()
    warden = subprocess.Popen(
        [a.warden, "serve", "--model", a.model, "--addr", f"127.0.0.1:{wport}",
         "--parallel", str(a.parallel), "--threads", str(a.threads), "--queue", "64"],
        stdout=subprocess.DEVNULL,
    )
    llama = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", a.model, "--port", str(lport),
         "--n_threads", str(a.threads), "--n_ctx", "4096", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    servers = {
        "warden": f"http://127.0.0.1:{wport}/v1",
        "llama-cpp-python": f"http://127.0.0.1:{lport}/v1",
    }
    try:
        wait_ready(servers["warden"], warden)
        wait_ready(servers["llama-cpp-python"], llama)
        # One warm-up request each.
        for base in servers.values():
            run_round(base, "m", 1, 1, 4)
        got = {name: {"latencies": [], "tokens": 0, "wall": 0.0} for name in servers}
        for r in range(a.rounds):
            for name, base in servers.items():
                wall, results = run_round(base, "m", a.requests, a.concurrency, a.max_tokens)
                g = got[name]
                g["wall"] += wall
                g["latencies"] += [t for t, _ in results]
                g["tokens"] += sum(n for _, n in results)
                print(f"round {r + 1} {name}: {wall:.1f} s", file=sys.stderr)
        report = {
            "settings": {k: v for k, v in vars(a).items() if k != "json"},
            "servers": {
                name: {
                    "requests": len(g["latencies"]),
                    "p50_s": statistics.median(g["latencies"]),
                    "p99_s": pct(g["latencies"], 99),
                    "requests_per_s": len(g["latencies"]) / g["wall"],
                    "completion_tok_per_s": g["tokens"] / g["wall"],
                }
                for name, g in got.items()
            },
        }
        print(json.dumps(report, indent=1))
        if a.json:
            json.dump(report, open(a.json, "w"), indent=1)
    finally:
        for p in (warden, llama):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
