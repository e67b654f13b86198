"""Test tooling: the official `mcp` Python SDK as a client of `warden mcp`
(runtime/tests/mcp.rs starts what is needed and runs one scenario per
call). Raises (exit 1) on anything unexpected and prints what it saw.

    python3 client.py stdio WARDEN POLICY WORKSPACE LOG
    python3 client.py http URL
"""

import json
import sys
import time

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def text(r):
    return "".join(c.text for c in r.content if c.type == "text")


async def exercise(session: ClientSession, label: str):
    init = await session.initialize()
    expect(init.serverInfo.name == "warden", init)
    expect(init.capabilities.tools is not None and not init.capabilities.tools.listChanged, init.capabilities)
    tools = {t.name: t for t in (await session.list_tools()).tools}
    expect({"read_file", "t", "slow"} <= set(tools), tools)
    expect(tools["read_file"].inputSchema.get("type") == "object", tools["read_file"])

    r = await session.call_tool("read_file", {"path": "notes.txt"})
    expect(not r.isError and "hello from the workspace" in text(r), r)
    # Outside the mounts: refused by the sandbox, one line KIND: message.
    r = await session.call_tool("read_file", {"path": "/etc/passwd"})
    expect(r.isError and text(r).startswith("denied: "), r)
    # Arguments that do not fit the schema.
    r = await session.call_tool("read_file", {"path": 3})
    expect(r.isError and text(r).startswith("invalid-arguments: "), r)
    # A tool the policy does not enable.
    r = await session.call_tool("write_file", {"path": "x", "content": "y"})
    expect(r.isError and text(r).startswith("unknown-tool: "), r)
    # The call's wall-clock limit (timeout_ms = 1000).
    t0 = time.time()
    r = await session.call_tool("t", {"action": "sleep", "ms": 20000})
    expect(r.isError and text(r).startswith("timeout: ") and time.time() - t0 < 5, (r, time.time() - t0))

    # Progress for a long call, when asked for.
    seen = []

    async def progress(p, total, message):
        seen.append((p, message))

    r = await session.call_tool("slow", {"action": "sleep", "ms": 2500}, progress_callback=progress)
    expect(not r.isError, r)
    expect(seen and "slow running" in (seen[0][1] or ""), seen)

    # Cancellation: notifications/cancelled ends the call (and its sandbox).
    async with anyio.create_task_group() as tg:
        async def long_call():
            await session.call_tool("slow", {"action": "sleep", "ms": 3500})

        tg.start_soon(long_call)
        await anyio.sleep(0.5)
        request_id = session._request_id - 1
        await session.send_notification(types.ClientNotification(types.CancelledNotification(
            params=types.CancelledNotificationParams(requestId=request_id, reason="test"))))
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    # The session goes on; then the call budget (max_tool_calls = 8) runs out.
    r = await session.call_tool("read_file", {"path": "notes.txt"})
    expect(not r.isError, r)
    r = await session.call_tool("read_file", {"path": "notes.txt"})
    expect(r.isError and "max_tool_calls" in text(r), r)
    print(label, "ok:", len(seen), "progress notifications")


async def stdio(warden, policy, workspace, log):
    params = StdioServerParameters(command=warden, args=["mcp", "--policy", policy, "--workspace", workspace, "--log", log])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await exercise(session, "stdio")


async def http(url):
    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await exercise(session, "http")
    # A malformed message gets a JSON-RPC error, never a crash; a foreign
    # Origin is refused.
    async with httpx.AsyncClient() as c:
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        r = await c.post(url, content=b"{not json", headers=h)
        expect(r.status_code == 400 and r.json()["error"]["code"] == -32700, (r.status_code, r.text))
        # A message over the 4 MiB bound: 413, sent as soon as the bound is
        # passed — a client still sending may see the connection closed
        # under it instead (the kernel resets a socket closed with unread
        # data), which is the same refusal.
        try:
            r = await c.post(url, content=b"[" + b"0," * (3 << 20) + b"0]", headers=h)
            expect(r.status_code == 413, (r.status_code, r.text[:200]))
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            pass
        r = await c.post(url, content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
                         headers={**h, "Origin": "https://evil.example"})
        expect(r.status_code == 403, (r.status_code, r.text))
    # Still serving.
    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            r = await session.call_tool("read_file", {"path": "notes.txt"})
            expect(not r.isError, r)
    print("http extra ok")


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "stdio":
        anyio.run(stdio, *sys.argv[2:6])
    else:
        anyio.run(http, sys.argv[2])
