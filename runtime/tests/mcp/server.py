"""A small MCP server written with the official `mcp` Python SDK (test
tooling), for warden's MCP client: `[mcp.NAME]` in a policy.

    server.py stdio JOURNAL
    server.py http JOURNAL [TOKEN]    prints `port N`, then serves /mcp
    server.py mute JOURNAL            never answers (initialize times out)

Besides the tools a policy names, it offers `verbose` (a 10 KB description)
and `bloated` (a 100 KB schema), for the bounds on what reaches a prompt.

JOURNAL is a file the server appends one line to per event (`call NAME`,
`cancelled NAME`, `pid N` at the start over stdio), so a test sees what reached the server and
what warden cancelled. With TOKEN, HTTP requests without
`Authorization: Bearer TOKEN` get 401.
"""

import asyncio
import json
import os
import socket
import sys

from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings

mode, journal = sys.argv[1], sys.argv[2]
token = sys.argv[3] if len(sys.argv) > 3 else None


def note(line):
    with open(journal, "a") as f:
        f.write(line + "\n")


# The DNS-rebinding check on, with the name the address-check test makes
# resolve to loopback among the hosts it accepts.
server = FastMCP(
    "warden-test-server",
    log_level="WARNING",
    transport_security=TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["localhost:*", "127.0.0.1:*", "mcp.example.com:*"],
    ),
)


@server.tool()
def add(a: int, b: int) -> str:
    """Adds two integers."""
    note("call add")
    return str(a + b)


@server.tool()
def echo(text: str) -> str:
    """Returns the text it is given."""
    note("call echo")
    return text


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then answers."""
    note("call slow")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        note("cancelled slow")
        raise
    return "done"


@server.tool()
def big(n: int) -> str:
    """Returns n bytes."""
    note("call big")
    return "x" * n


@server.tool()
def huge() -> str:
    """Returns 5 MB, more than warden takes in one message."""
    note("call huge")
    return "y" * 5_000_000


@server.tool()
def fail(why: str) -> str:
    """Always fails."""
    note("call fail")
    raise ValueError(why)


@server.tool()
def env() -> str:
    """The names of the variables in its environment."""
    note("call env")
    return json.dumps(sorted(os.environ))


@server.tool(description="A tool that says too much. " + "blah " * 2000)
def verbose() -> str:
    return "ok"


def bloated(**kwargs) -> str:
    return "ok"


# A schema of over 100 KB, which no prompt should carry.
server.add_tool(
    bloated,
    name="bloated",
    description="A tool whose schema is enormous.",
)
server._tool_manager._tools["bloated"].parameters = {
    "type": "object",
    "properties": {f"field_{i}": {"type": "string", "description": "x" * 100} for i in range(1000)},
}


@server.tool()
def hidden() -> str:
    """A tool no policy names."""
    note("call hidden")
    return "you should not see this"


if mode == "mute":
    # Starts, reads, never answers: initialize cannot complete.
    note(f"pid {os.getpid()}")
    for _ in sys.stdin:
        pass
elif mode == "stdio":
    note(f"pid {os.getpid()}")
    server.run("stdio")
elif mode == "http":
    import uvicorn

    app = server.streamable_http_app()
    if token:
        inner = app

        async def app(scope, receive, send):
            if scope["type"] == "http":
                auth = dict(scope["headers"]).get(b"authorization", b"").decode()
                if auth != f"Bearer {token}":
                    note("unauthorized")
                    await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
                    await send({"type": "http.response.body", "body": b"token needed"})
                    return
            await inner(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    print("port", sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
else:
    sys.exit(f"unknown mode {mode}")
