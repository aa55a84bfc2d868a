#!/usr/bin/env bash
# The README's two commands, runnable on a fresh machine with Python 3.11+, Java 17+ and Maven:
#   bash deploy/dev.sh demo   set everything up, run the main job on a local single-node Kafka
#   bash deploy/dev.sh test   set everything up, lint and type-check, run the whole test suite (extra args go
#                             to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
export STOCKSYNC_CACHE_DIR="${STOCKSYNC_CACHE_DIR:-$PWD/.cache}"

die() { echo "dev.sh: $*" >&2; exit 2; }

# 3.12 and 3.11 first: the fast Avro codec (cavro) has wheels for them, not yet for 3.13.
python_311() {
  for candidate in python3.12 python3.11 python3.13 python3; do
    if "$candidate" -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  die "Python 3.11 or newer is needed (python3 is $(python3 --version 2>&1 || echo missing))"
}

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$(python_311)" -m venv .venv
  fi
  # Reinstall only when the dependencies changed (pip is slow even when there is nothing to do).
  local stamp=.venv/.stocksync-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}

need_kafka_tools() {
  if [ -z "${STOCKSYNC_BOOTSTRAP_SERVERS:-}${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    command -v java >/dev/null || die "Java 17+ is needed to run the local Kafka broker (e.g. apt-get install openjdk-17-jre-headless)"
    command -v mvn >/dev/null || die "Maven is needed to fetch Kafka's jars (e.g. apt-get install maven)"
  fi
}

# The demo page's test loads it in a real browser: Debian's Chromium, installed where apt can (as root); without
# it that one test is skipped, saying why.
browser_for_tests() {
  if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "dev.sh: installing Chromium (Debian's package) for the demo page's browser test" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
      || echo "dev.sh: Chromium could not be installed; the browser test will be skipped" >&2
  fi
}

# The chaos suite's network faults go through Toxiproxy, built with Go from the Go module proxy: Debian's Go
# where apt can install it (as root).
go_for_chaos() {
  if ! command -v go >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      echo "dev.sh: installing Go (Debian's package) to build Toxiproxy for the chaos suite's network faults" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go >/dev/null 2>&1; } || true
    fi
    command -v go >/dev/null || die "Go is needed to build Toxiproxy for the chaos suite's network faults (e.g. apt-get install golang-go)"
  fi
}

case "${1:-}" in
  test)
    shift
    setup
    need_kafka_tools
    browser_for_tests
    go_for_chaos
    echo "dev.sh: ruff check; mypy --strict (streams, bench, tests)" >&2
    .venv/bin/ruff check --quiet .
    .venv/bin/mypy --no-error-summary streams bench tests
    exec .venv/bin/python -m pytest tests "$@"
    ;;
  demo)
    shift
    setup
    need_kafka_tools
    exec .venv/bin/stocksync demo "$@"
    ;;
  *)
    die "usage: bash deploy/dev.sh demo|test [args]"
    ;;
esac
