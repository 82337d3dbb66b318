"""Drives flowtap's MCP server with the official Python SDK and prints what it
saw as one JSON document on stdout, for tests/mcp.rs to check.

Runs under either SDK line: 2.x (`mcp.Client`, which negotiates the stateless
2026-07-28 revision or falls back to the initialize handshake) and 1.x
(`ClientSession`, handshake revisions only).

    python mcp_client.py --http URL [--token T] [--mode auto|legacy] --calls JSON
    python mcp_client.py --stdio -- COMMAND ARGS... --calls JSON
"""

import argparse
import json
import sys
from importlib.metadata import version

import anyio

SDK = version("mcp")
MODERN = int(SDK.split(".")[0]) >= 2


def field(obj, snake, camel):
    """A result attribute: 2.x names are snake_case, 1.x camelCase."""
    return getattr(obj, snake) if hasattr(obj, snake) else getattr(obj, camel)


async def scenario(session, calls, report):
    tools = (await session.list_tools()).tools
    report["tools"] = [
        {"name": t.name, "has_output_schema": field(t, "output_schema", "outputSchema") is not None}
        for t in tools
    ]
    for tool, arguments in calls:
        r = await session.call_tool(tool, arguments)
        report["calls"].append(
            {
                "tool": tool,
                "arguments": arguments,
                "is_error": bool(field(r, "is_error", "isError")),
                "structured": field(r, "structured_content", "structuredContent"),
                "text": r.content[0].text if r.content else None,
            }
        )
    prompts = (await session.list_prompts()).prompts
    report["prompts"] = [
        {"name": p.name, "required": [a.name for a in (p.arguments or []) if a.required]} for p in prompts
    ]
    got = await session.get_prompt("diagnose_slow_service", {"service": "payments"})
    report["prompt"] = {"role": got.messages[0].role, "text": got.messages[0].content.text}


async def run_modern(args, calls, report):
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    if args.stdio:
        target = StdioServerParameters(command=args.command[0], args=args.command[1:])
        async with Client(target, mode=args.mode, cache=None) as client:
            await record(client, calls, report)
        return
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0)) as http:
        async with Client(streamable_http_client(args.http, http_client=http), mode=args.mode, cache=None) as client:
            await record(client, calls, report)


async def record(client, calls, report):
    report["protocol"] = client.protocol_version
    report["era"] = "stateless" if client.session.discover_result is not None else "handshake"
    await scenario(client, calls, report)


async def run_v1(args, calls, report):
    import httpx
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client

    async def over(read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            report["protocol"] = init.protocolVersion
            report["era"] = "handshake"
            await scenario(session, calls, report)

    if args.stdio:
        target = StdioServerParameters(command=args.command[0], args=args.command[1:])
        async with stdio_client(target) as (read, write):
            await over(read, write)
        return
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30.0, read=60.0)) as http:
        async with streamable_http_client(args.http, http_client=http) as (read, write, _session_id):
            await over(read, write)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http")
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--token")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--calls", required=True, help="JSON list of [tool, arguments]")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    calls = json.loads(args.calls)
    report = {"sdk": SDK, "calls": []}
    anyio.run(run_modern if MODERN else run_v1, args, calls, report)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
