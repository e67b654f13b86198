"""Per-call latency of `warden mcp` over stdio, side by side with the time
the same calls spent in the sandbox (each call's `elapsed_us` in the
session log, which is what an in-process call costs): the difference is
MCP's framing, JSON-RPC and the client. Bounded: N calls (default 200).

    python3 runtime/benches/mcp_latency.py [WARDEN] [N]

Needs the `mcp` Python package. Prints p50/p99 of both and the overhead.
"""

import json
import os
import statistics
import sys
import tempfile
import time

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARDEN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/warden")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def main():
    tmp = tempfile.mkdtemp()
    log = os.path.join(tmp, "mcp.jsonl")
    # policies/default.toml with room for every call of the run.
    policy = os.path.join(tmp, "policy.toml")
    text = open(os.path.join(ROOT, "policies/default.toml")).read()
    open(policy, "w").write(text.replace("max_tool_calls = 32", f"max_tool_calls = {N + 100}"))
    ws = os.path.join(ROOT, "examples/workspace")
    params = StdioServerParameters(command=WARDEN, args=["mcp", "--policy", policy, "--workspace", ws, "--log", log])
    trips = []
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            for i in range(N + 10):
                t = time.perf_counter()
                r = await s.call_tool("read_file", {"path": "README.md"})
                if i >= 10:  # warm-up
                    trips.append((time.perf_counter() - t) * 1e3)
                assert not r.isError, r
    inside = [json.loads(l)["elapsed_us"] / 1e3 for l in open(log) if '"type":"tool_call"' in l][10:]
    print(f"read_file of README.md, {len(trips)} calls (after 10 warm-up), policies/default.toml's read_file")
    print(f"  MCP stdio round trip (Python SDK client)  p50 {pct(trips, 50):.3f} ms  p99 {pct(trips, 99):.3f} ms  mean {statistics.mean(trips):.3f} ms")
    print(f"  in the sandbox (in-process call)          p50 {pct(inside, 50):.3f} ms  p99 {pct(inside, 99):.3f} ms  mean {statistics.mean(inside):.3f} ms")
    print(f"  MCP's share (p50 difference)              {pct(trips, 50) - pct(inside, 50):.3f} ms")


anyio.run(main)
