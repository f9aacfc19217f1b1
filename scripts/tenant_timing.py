#!/usr/bin/env python3
"""Times refused post-call webhooks against a running gateway (scripts/bench-tenant-timing.sh).

Sends --requests refusals of each kind, interleaved (one of each kind in turn, in a shuffled
order per round, on one keep-alive connection): an existing tenant with a wrong signature, an
unknown tenant (a new id each time), and an existing tenant without a webhook secret. Prints
p50/p95/p99 and the mean of each kind in microseconds, measured at the client.
"""
import argparse
import hashlib
import hmac
import http.client
import json
import random
import statistics
import sys
import time


def signed(body: bytes, secret: str) -> str:
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v0={mac}"


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--known", default="acme", help="existing tenant with a webhook secret")
    parser.add_argument("--quiet", default="quiet", help="existing tenant without a webhook secret")
    parser.add_argument("--requests", type=int, default=2000, help="refusals of each kind")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    body = open(args.body, "rb").read()
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    kinds = {
        "known tenant, wrong signature": lambda i: args.known,
        "unknown tenant": lambda i: f"ghost-{i}-{random.getrandbits(32):08x}",
        "tenant without secret": lambda i: args.quiet,
    }
    times = {kind: [] for kind in kinds}
    answers = {kind: set() for kind in kinds}
    for i in range(args.warmup + args.requests):
        order = list(kinds)
        random.shuffle(order)
        for kind in order:
            tenant = kinds[kind](i)
            headers = {"ElevenLabs-Signature": signed(body, "wsec_wrong_" + str(i)), "Content-Type": "application/json"}
            start = time.perf_counter_ns()
            connection.request("POST", f"/v1/elevenlabs/{tenant}/post-call", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            elapsed = time.perf_counter_ns() - start
            if i >= args.warmup:
                times[kind].append(elapsed / 1000)
                answers[kind].add((response.status, answer))
    report = {}
    for kind, values in times.items():
        report[kind] = {
            "n": len(values),
            "p50_us": round(percentile(values, 50), 1),
            "p95_us": round(percentile(values, 95), 1),
            "p99_us": round(percentile(values, 99), 1),
            "mean_us": round(statistics.fmean(values), 1),
        }
    distinct = set().union(*answers.values())
    if args.json:
        print(json.dumps({"kinds": report, "distinct_answers": len(distinct)}, indent=2))
    else:
        print(f"{'kind':32} {'n':>6} {'p50 µs':>9} {'p95 µs':>9} {'p99 µs':>9} {'mean µs':>9}")
        for kind, r in report.items():
            print(f"{kind:32} {r['n']:>6} {r['p50_us']:>9} {r['p95_us']:>9} {r['p99_us']:>9} {r['mean_us']:>9}")
        print(f"distinct answers (status and body) across all kinds: {len(distinct)}")
    return 0 if len(distinct) == 1 and all(status == 401 for status, _ in distinct) else 1


if __name__ == "__main__":
    sys.exit(main())
