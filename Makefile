# The scripts hold the logic; see scripts/*.sh.
.PHONY: run test build clean

# make test ARGS="--filter Queue" passes arguments to `swift test`.
ARGS ?=

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh $(ARGS)

build:
	bash scripts/deps.sh
	swift build -c release

# Build products only; ./data (database, Redis AOF, dev secrets) is kept.
clean:
	swift package clean
