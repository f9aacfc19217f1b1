#!/usr/bin/env python3
"""Drives Engram's MCP server (/mcp) with the official Python MCP client (PyPI `mcp`).

  check: initialize (the client's default 'auto' negotiation), tools/list, every tool, a
         reconnect, and the errors the agent's LLM can cause; prints one JSON object with what it
         saw and exits 0, or names the first failed check on stderr and exits 1.
  bench: times tools/call search_memory through the client and as bare JSON-RPC POSTs; prints
         p50/p95 in milliseconds.

The key comes from ENGRAM_MCP_KEY (never an argument: argument lists are visible to others).
Used by the Swift tests (MCPClientProcessTests) and `make bench-mcp`; needs `scripts/test.sh`'s
.venv-mcp.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

TOOLS = {"search_memory", "remember", "forget_me", "set_consent"}


class CheckFailed(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


def connect(url, key):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30.0))
    return Client(streamable_http_client(url, http_client=http), read_timeout_seconds=30)


def text_of(result):
    return "".join(part.text for part in result.content if getattr(part, "type", None) == "text")


async def check(url, key, phone, query, expect_text):
    seen = {}
    async with connect(url, key) as client:
        seen["protocol_version"] = client.protocol_version
        expect(client.server_info is not None and client.server_info.name == "engram", "server_info names engram")
        expect(client.server_capabilities.tools is not None, "the server offers tools")
        await client.send_ping()

        tools = (await client.list_tools()).tools
        names = {tool.name for tool in tools}
        seen["tools"] = sorted(names)
        expect(names == TOOLS, f"tools/list gives the four tools, got {sorted(names)}")
        for tool in tools:
            expect("caller_id" in tool.input_schema.get("properties", {}), f"{tool.name} takes caller_id")

        found = await client.call_tool("search_memory", {"query": query, "caller_id": phone})
        expect(not found.is_error, "search_memory succeeds")
        seen["search_text"] = text_of(found)
        expect(expect_text in seen["search_text"], f"search_memory finds '{expect_text}'")
        expect(isinstance(found.structured_content, dict) and found.structured_content.get("memories"), "structured memories")

        # Values the tool refuses are tool errors the LLM can read; wrong types are protocol errors.
        empty = await client.call_tool("search_memory", {"query": "   ", "caller_id": phone})
        expect(empty.is_error and "missing_field" in text_of(empty), "an empty query is a tool error")
        try:
            wrong = await client.call_tool("search_memory", {"query": 5, "caller_id": phone})
            expect(False, f"a number as query is a JSON-RPC error, got {wrong}")
        except MCPError as error:
            expect(error.error.code == -32602, f"invalid params (-32602), got {error.error.code}")
        try:
            await client.call_tool("no_such_tool", {})
            expect(False, "an unknown tool is a JSON-RPC error")
        except MCPError as error:
            expect(error.error.code == -32602, f"unknown tool: invalid params (-32602), got {error.error.code}")

        remembered = await client.call_tool("remember", {"fact": "The caller prefers morning appointments.", "caller_id": phone})
        expect(not remembered.is_error and remembered.structured_content.get("status") == "remembered", "remember queues the fact")
        consent = await client.call_tool("set_consent", {"caller_id": phone, "granted": True})
        expect(consent.structured_content.get("status") == "granted", "set_consent records the choice")
        unconfirmed = await client.call_tool("forget_me", {"caller_id": phone, "confirm": False})
        expect(unconfirmed.structured_content.get("status") == "not_confirmed", "forget_me without confirm erases nothing")

    # A new connection, as ElevenLabs makes after ~30 s idle: nothing to resume, it just works.
    async with connect(url, key) as client:
        still = await client.call_tool("search_memory", {"query": query, "caller_id": phone})
        expect(expect_text in text_of(still), "after reconnecting, and an unconfirmed forget_me, the memory is still found")
        erased = await client.call_tool("forget_me", {"caller_id": phone, "confirm": True})
        expect(erased.structured_content.get("status") == "erased", "forget_me with confirm erases")
        gone = await client.call_tool("search_memory", {"query": query, "caller_id": phone})
        expect(gone.structured_content.get("memories") == [], "nothing is found after forget_me")
        seen["reconnected"] = True
    return seen


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


BENCH_QUERIES = [
    "what happened with the last appointment",
    "does the caller like coffee from the bakery",
    "how does the caller prefer to be contacted about billing",
    "insurance payment",
]


async def bench(url, key, phone, queries, rounds):
    through_client = []
    async with connect(url, key) as client:
        for i in range(rounds + 10):
            start = time.perf_counter()
            result = await client.call_tool("search_memory", {"query": queries[i % len(queries)], "caller_id": phone})
            elapsed = (time.perf_counter() - start) * 1000
            expect(not result.is_error, "search_memory answers without error")
            if i >= 10:  # warm-up: connections, the caller's vector cache
                through_client.append(elapsed)
    bare = []
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    async with httpx2.AsyncClient(timeout=30.0) as http:
        for i in range(rounds + 10):
            body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                    "params": {"name": "search_memory", "arguments": {"query": queries[i % len(queries)], "caller_id": phone}}}
            start = time.perf_counter()
            response = await http.post(url, json=body, headers=headers)
            elapsed = (time.perf_counter() - start) * 1000
            expect(response.status_code == 200 and "result" in response.json(), "a bare tools/call answers")
            if i >= 10:
                bare.append(elapsed)
    return {
        "rounds": rounds, "queries": len(queries),
        "mcp_client_ms": {"p50": percentile(through_client, 50), "p95": percentile(through_client, 95),
                          "mean": statistics.fmean(through_client)},
        "bare_post_ms": {"p50": percentile(bare, 50), "p95": percentile(bare, 95), "mean": statistics.fmean(bare)},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "bench"])
    parser.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8080/mcp")
    parser.add_argument("--caller", default="+12523960448", help="caller_id for the tools")
    parser.add_argument("--query", action="append", help="search query (check: the first; bench: rotated; default: the fixture's question / four bench queries)")
    parser.add_argument("--expect", default="Friday", help="text search_memory must find (check)")
    parser.add_argument("--rounds", type=int, default=200, help="timed calls (bench)")
    args = parser.parse_args()
    key = os.environ.get("ENGRAM_MCP_KEY")
    if not key:
        print("mcp_client: set ENGRAM_MCP_KEY to an Engram tool key", file=sys.stderr)
        return 2
    try:
        if args.command == "check":
            query = (args.query or ["When is my cleaning appointment?"])[0]
            result = asyncio.run(check(args.url, key, args.caller, query, args.expect))
        else:
            result = asyncio.run(bench(args.url, key, args.caller, args.query or BENCH_QUERIES, args.rounds))
    except CheckFailed as failure:
        print(f"mcp_client: check failed: {failure}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
