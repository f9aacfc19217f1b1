# The scripts hold the logic; see scripts/*.sh.
.PHONY: run test bench bench-search bench-proxy chaos build clean

# make test ARGS="--filter Queue" passes arguments to `swift test`.
ARGS ?=

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh $(ARGS)

# Load benchmark against throwaway services (standard profile, under 5 minutes on 2 cores);
# make bench ARGS="--duration 5 --no-find-max-postcall" passes arguments to `engram bench`.
bench:
	bash scripts/bench.sh $(ARGS)

# Search latency at scale on SQLite and PostgreSQL (no HTTP); ARGS go to `engram bench-search`.
bench-search:
	bash scripts/bench-search.sh $(ARGS)

# Custom-LLM proxy overhead (time to first byte) against throwaway services; ARGS go to `engram bench-proxy`.
bench-proxy:
	bash scripts/bench-proxy.sh $(ARGS)

# Faults under load (release binaries, own Redis and fake LLM, under 10 minutes on 2 cores):
# 2,000 signed webhooks while workers are killed, Redis is killed and restarted and the LLM
# fails; exits non-zero on a lost, duplicated or 5xx'd event. make chaos ARGS="--count 1200 --rate 20".
chaos:
	bash scripts/chaos.sh $(ARGS)

build:
	bash scripts/deps.sh
	swift build -c release

# Build products only; ./data (database, Redis AOF, dev secrets) is kept.
clean:
	swift package clean
