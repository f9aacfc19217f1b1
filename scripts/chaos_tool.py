#!/usr/bin/env python3
"""Load and verification halves of scripts/chaos.sh (Python standard library only).

  chaos_tool.py load   --url URL --fixture FILE --run RUN --count N --rate R --callers C --out FILE
      Sends N distinct signed post-call webhooks (open loop, R per second) built from the fixture:
      conversation_id conv_chaos_<RUN>_<i>, caller +1555<7 digits of i mod C>. The HMAC secret is
      read from CHAOS_WEBHOOK_SECRET. Writes one JSON line per request (conversation id, HTTP
      status or the connection error's class, latency) to --out, and prints progress to stderr.

  chaos_tool.py verify --results FILE --database SQLITE --run RUN [--dead N] [--json OUT]
      Checks the run's invariants against the store and prints a summary; exit 1 on a violation.

No transcript, phone number or secret is printed.
"""
import argparse
import collections
import hashlib
import hmac
import http.client
import json
import os
import queue
import sqlite3
import sys
import threading
import time
import urllib.parse


# --- load ---------------------------------------------------------------------------------------

def build_body(template, run, index, callers):
    event = json.loads(json.dumps(template))
    conversation = "conv_chaos_%s_%05d" % (run, index)
    phone = "+1555%07d" % (1000000 + index % callers)
    data = event["data"]
    data["conversation_id"] = conversation
    data["user_id"] = None
    data.setdefault("metadata", {}).setdefault("phone_call", {})["external_number"] = phone
    initiation = data.setdefault("conversation_initiation_client_data", {})
    variables = initiation.setdefault("dynamic_variables", {})
    variables["system__caller_id"] = phone
    variables["system__conversation_id"] = conversation
    return conversation, json.dumps(event, separators=(",", ":")).encode()


def sign(body, secret):
    t = str(int(time.time()))
    digest = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "t=%s,v0=%s" % (t, digest)


def load(args):
    secret = os.environ.get("CHAOS_WEBHOOK_SECRET")
    if not secret:
        sys.exit("chaos_tool load: CHAOS_WEBHOOK_SECRET is not set")
    with open(args.fixture, "rb") as f:
        template = json.load(f)
    url = urllib.parse.urlsplit(args.url)
    jobs = queue.Queue()
    results = []
    lock = threading.Lock()

    def sender():
        while True:
            item = jobs.get()
            if item is None:
                return
            conversation, body = item
            started = time.monotonic()
            status = None
            try:
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=args.timeout)
                connection.request("POST", url.path, body=body, headers={
                    "Content-Type": "application/json", "ElevenLabs-Signature": sign(body, secret)})
                response = connection.getresponse()
                response.read()
                status = response.status
                connection.close()
            except Exception as error:  # connection refused, reset, timeout
                status = "error:" + type(error).__name__
            record = {"conversation_id": conversation, "status": status,
                      "ms": round((time.monotonic() - started) * 1000, 1), "at": round(time.time(), 3)}
            with lock:
                results.append(record)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    for index in range(args.count):
        due = started + index / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        jobs.put(build_body(template, args.run, index, args.callers))
        if index and index % (args.rate * 10) == 0:
            with lock:
                done = len(results)
                bad = sum(1 for r in results if r["status"] != 200)
            print("load: %d sent, %d answered, %d not 200 (t=%.0fs)" % (index, done, bad, time.monotonic() - started), file=sys.stderr)
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.join()
    with open(args.out, "w") as f:
        for record in results:
            f.write(json.dumps(record) + "\n")
    statuses = collections.Counter(str(r["status"]) for r in results)
    print("load: done: %d requests in %.1fs; statuses %s" % (len(results), time.monotonic() - started, dict(statuses)), file=sys.stderr)
    return 0


# --- verify -------------------------------------------------------------------------------------

def verify(args):
    results = [json.loads(line) for line in open(args.results) if line.strip()]
    statuses = collections.Counter(str(r["status"]) for r in results)
    sent = [r["conversation_id"] for r in results]
    accepted = {r["conversation_id"] for r in results if r["status"] == 200}
    five_xx = sum(n for s, n in statuses.items() if s.isdigit() and s.startswith("5"))
    other_codes = sum(n for s, n in statuses.items() if s.isdigit() and s != "200" and not s.startswith("5"))
    connection_errors = sum(n for s, n in statuses.items() if s.startswith("error:"))
    latencies = sorted(r["ms"] for r in results if r["status"] == 200)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0

    db = sqlite3.connect("file:%s?mode=ro" % args.database, uri=True, timeout=30)
    prefix = "post_call_transcription:conv_chaos_%s_" % args.run
    rows = db.execute("SELECT idempotency_key FROM processed_events WHERE idempotency_key LIKE ? || '%'", (prefix,)).fetchall()
    processed = collections.Counter(key[len("post_call_transcription:"):] for (key,) in rows)
    missing = sorted(accepted - set(processed))
    twice = sorted(c for c, n in processed.items() if n > 1)
    unexpected = sorted(set(processed) - set(sent))

    # Every memory citing a chaos conversation, with the extractor of that citation.
    cites = db.execute("""
        SELECT m.id, m.user_key, m.status, m.needs_reextraction,
               json_extract(s.value, '$.conversation_id'), json_extract(s.value, '$.extractor')
        FROM memories m, json_each(m.sources) s
        WHERE json_extract(s.value, '$.conversation_id') LIKE ?""", ("conv_chaos_%s_%%" % args.run,)).fetchall()
    citations = collections.Counter((memory, conversation) for memory, _, _, _, conversation, _ in cites)
    cited_twice = sum(1 for n in citations.values() if n > 1)
    memories = {memory for memory, *_ in cites}
    extractor_by_conversation = {}
    for _, _, _, _, conversation, extractor in cites:
        extractor_by_conversation.setdefault(conversation, set()).add(extractor)
    conversations_by_extractor = collections.Counter(
        "+".join(sorted(e)) for e in extractor_by_conversation.values())
    # Two current memories of one caller with the same content (same vector) citing the same
    # conversation: the same event's memories written twice.
    duplicate_groups = db.execute("""
        WITH cited AS (
            SELECT DISTINCT m.id, m.tenant_id, m.user_key, json_extract(s.value, '$.conversation_id') AS conversation
            FROM memories m, json_each(m.sources) s
            WHERE m.status = 'active' AND json_extract(s.value, '$.conversation_id') LIKE ?)
        SELECT COUNT(*) FROM (
            SELECT c.tenant_id, c.user_key, c.conversation, v.embedder, v.vector
            FROM cited c JOIN memory_vectors v ON v.memory_id = c.id
            GROUP BY c.tenant_id, c.user_key, c.conversation, v.embedder, v.vector HAVING COUNT(*) > 1)
        """, ("conv_chaos_%s_%%" % args.run,)).fetchone()[0]
    without_memories = sorted(c for c in accepted if c not in extractor_by_conversation)
    fallback_memories = len({m for m, _, _, flag, _, _ in cites if flag})

    violations = []
    if len(set(sent)) != len(sent):
        violations.append("the load sent a conversation id twice (script bug)")
    if five_xx:
        violations.append("%d requests answered 5xx" % five_xx)
    if other_codes:
        violations.append("%d requests answered another non-200 code" % other_codes)
    if connection_errors:
        violations.append("%d requests got no answer (connection errors; the gateway is never stopped in this run)" % connection_errors)
    if missing:
        violations.append("%d accepted conversations are not in processed_events (lost), e.g. %s" % (len(missing), missing[:3]))
    if twice:
        violations.append("%d conversations recorded more than once" % len(twice))
    if unexpected:
        violations.append("%d processed conversations were never sent" % len(unexpected))
    if cited_twice:
        violations.append("%d memories cite the same conversation twice (an event applied twice)" % cited_twice)
    if duplicate_groups:
        violations.append("%d groups of identical current memories from one conversation of one caller" % duplicate_groups)
    if without_memories:
        violations.append("%d accepted conversations left no memory, e.g. %s" % (len(without_memories), without_memories[:3]))
    if args.dead:
        violations.append("%d dead letters (see `engram queue dead list`)" % args.dead)

    summary = {
        "requests": len(results), "distinct_conversations": len(set(sent)),
        "http_statuses": dict(statuses), "http_5xx": five_xx, "connection_errors": connection_errors,
        "ack_ms_p50": pct(0.50), "ack_ms_p99": pct(0.99), "ack_ms_max": latencies[-1] if latencies else 0,
        "processed_events": sum(processed.values()), "processed_distinct": len(processed),
        "accepted_not_processed": len(missing), "processed_twice": len(twice),
        "memories": len(memories), "memories_citing_a_conversation_twice": cited_twice,
        "duplicate_memory_groups": duplicate_groups, "conversations_by_extractor": dict(conversations_by_extractor),
        "fallback_memories_marked_reextractable": fallback_memories, "dead_letters": args.dead,
        "violations": violations,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    print("requests sent:                 %d (%d distinct conversations)" % (len(results), len(set(sent))))
    print("HTTP answers:                  %s" % ", ".join("%s: %d" % kv for kv in sorted(statuses.items())))
    print("  5xx: %d, other non-200: %d, connection errors: %d" % (five_xx, other_codes, connection_errors))
    print("  acknowledgement ms (200s):   p50 %.1f, p99 %.1f, max %.1f" % (pct(0.5), pct(0.99), latencies[-1] if latencies else 0))
    print("processed_events rows:         %d for %d distinct conversations (accepted: %d)" % (sum(processed.values()), len(processed), len(accepted)))
    print("  accepted but not processed:  %d" % len(missing))
    print("  recorded more than once:     %d" % len(twice))
    print("memories citing the run:       %d" % len(memories))
    print("  citing one conversation 2x:  %d" % cited_twice)
    print("  duplicate groups:            %d" % duplicate_groups)
    print("  conversations by extractor:  %s" % ", ".join("%s: %d" % kv for kv in sorted(conversations_by_extractor.items())))
    print("  marked for re-extraction:    %d memories (local fallback)" % fallback_memories)
    print("dead letters:                  %d" % args.dead)
    if violations:
        print("VIOLATIONS:")
        for violation in violations:
            print("  - " + violation)
        return 1
    print("OK: every event answered 200, every conversation recorded exactly once, no duplicate memories")
    return 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("load")
    p.add_argument("--url", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--rate", type=int, default=25)
    p.add_argument("--callers", type=int, default=1500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--out", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--results", required=True)
    v.add_argument("--database", required=True)
    v.add_argument("--run", required=True)
    v.add_argument("--dead", type=int, default=0)
    v.add_argument("--json")
    args = parser.parse_args()
    return load(args) if args.command == "load" else verify(args)


if __name__ == "__main__":
    sys.exit(main())
