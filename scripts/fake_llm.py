#!/usr/bin/env python3
"""A fake OpenAI-compatible server for scripts/chaos.sh (Python standard library only).

  python3 scripts/fake_llm.py --port 0 --port-file PATH [--dimension 64]

Serves on 127.0.0.1:
  POST /v1/chat/completions  a json_schema answer Engram's OpenAIExtractor accepts: one semantic
                             memory per caller turn ("[i] caller: text" lines of the last message),
                             citing its index, and a summary. Deterministic per transcript.
  POST /v1/embeddings        deterministic unit vectors, one per input (`dimensions` or --dimension).
  POST /control/mode         body: ok | 500 | 429 | timeout | garbage. Switches what the two API
                             routes answer from now on (timeout = hold the request 30 s, then 500).
  GET  /control/stats        JSON: the current mode and request counts by route and answer.

It writes the port it listens on to --port-file once it is ready. Nothing it receives is logged.
"""
import argparse
import hashlib
import json
import math
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "500", "429", "timeout", "garbage")


class State:
    def __init__(self, dimension):
        self.lock = threading.Lock()
        self.mode = "ok"
        self.dimension = dimension
        self.counts = {}

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1


def extraction(transcript):
    memories = []
    for line in transcript.split("\n"):
        if not line.startswith("[") or "]" not in line:
            continue
        index_text, rest = line[1:].split("]", 1)
        try:
            index = int(index_text)
        except ValueError:
            continue
        rest = rest.strip()
        if not rest.startswith("caller:"):
            continue
        text = rest[len("caller:"):].strip()
        memories.append({
            "content": "The caller said: " + text, "sector": "semantic", "slot": None, "importance": 0.6,
            "valid_from": None, "source_turns": [index], "sensitive": False,
        })
    return {"memories": memories, "summary": "The caller spoke with the agent.", "user_name": None}


def vector(text, dimension):
    values = []
    counter = 0
    while len(values) < dimension:
        digest = hashlib.sha256(("%d:" % counter).encode() + text.encode("utf-8")).digest()
        for (word,) in struct.iter_unpack(">H", digest):
            values.append(word / 32767.5 - 1.0 + 0.001)
        counter += 1
    values = values[:dimension]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai"

    def log_message(self, *args):  # never log requests (they carry transcripts)
        pass

    def send_json(self, status, payload, headers=None):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        state = self.server.state
        if self.path == "/control/stats":
            with state.lock:
                payload = {"mode": state.mode, "counts": dict(state.counts)}
            return self.send_json(200, payload)
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        state = self.server.state
        body = self.read_body()
        if self.path == "/control/mode":
            mode = body.decode().strip()
            if mode not in MODES:
                return self.send_json(400, {"error": {"message": "mode must be one of " + ", ".join(MODES)}})
            with state.lock:
                state.mode = mode
            return self.send_json(200, {"mode": mode})
        if self.path not in ("/v1/chat/completions", "/v1/embeddings"):
            return self.send_json(404, {"error": {"message": "not found"}})
        route = "chat" if self.path.endswith("completions") else "embeddings"
        with state.lock:
            mode = state.mode
        state.count("%s:%s" % (route, mode))
        if mode == "500":
            return self.send_json(500, {"error": {"message": "fake outage", "type": "server_error"}})
        if mode == "429":
            return self.send_json(429, {"error": {"message": "fake rate limit", "type": "rate_limit"}}, {"Retry-After": "1"})
        if mode == "timeout":
            time.sleep(30)
            return self.send_json(500, {"error": {"message": "fake timeout", "type": "server_error"}})
        try:
            request = json.loads(body)
        except ValueError:
            return self.send_json(400, {"error": {"message": "body is not JSON"}})
        if route == "chat":
            if mode == "garbage":
                content = "Sure! Here are some memories."
            else:
                messages = request.get("messages") or []
                transcript = (messages[-1].get("content") or "") if messages else ""
                content = json.dumps(extraction(transcript), sort_keys=True)
            return self.send_json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": request.get("model", "fake"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })
        if mode == "garbage":
            return self.send_json(200, {"object": "list", "data": "not a list"})
        dimension = request.get("dimensions") or state.dimension
        inputs = request.get("input") or []
        if isinstance(inputs, str):
            inputs = [inputs]
        data = [{"object": "embedding", "index": i, "embedding": vector(text, dimension)} for i, text in enumerate(inputs)]
        return self.send_json(200, {"object": "list", "data": data, "model": request.get("model", "fake"),
                                    "usage": {"prompt_tokens": 1, "total_tokens": 1}})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--dimension", type=int, default=64)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args.dimension)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        import os
        os.replace(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
