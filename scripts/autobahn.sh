#!/usr/bin/env bash
# Runs Autobahn|Testsuite against uvhttp's WebSocket server (httpechoserver /ws) and client
# (wsclient --autobahn), using the rig in shared/conformance (see its README).
#
#   scripts/autobahn.sh            quick: both directions without the permessage-deflate
#                                  cases (12.*, 13.*), about a minute; run by ./dev.sh test
#   scripts/autobahn.sh --full     everything, ~20 minutes each way
#
# Prints each direction's `N passed, N failed` and exits non-zero if any case failed.
# Skips (exit 0, with the reason) when the conformance rig is not beside the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE="${1:-}"
RIG=""
for d in shared/conformance ../shared/conformance; do
  if [ -x "$d/autobahn-server.sh" ]; then RIG="$(cd "$d" && pwd)"; break; fi
done
if [ -z "$RIG" ]; then
  echo "autobahn: skipped: no shared/conformance rig beside this repository"
  exit 0
fi
COMP="--no-compression"
[ "$MODE" = "--full" ] && COMP=""

cargo build --release --example httpechoserver --example wsclient
OUT="target/autobahn"
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SPORT=$(free_port)
./target/release/examples/httpechoserver --host 127.0.0.1 --port "$SPORT" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT

status=0
# shellcheck disable=SC2086
"$RIG/autobahn-server.sh" $COMP --agent uvhttp --report "$OUT/server" "ws://127.0.0.1:$SPORT/ws" || status=1
kill $SERVER 2>/dev/null || true

CPORT=$(free_port)
# shellcheck disable=SC2086
"$RIG/autobahn-client.sh" $COMP --port "$CPORT" --agent uvhttp --report "$OUT/client" \
  -- ./target/release/examples/wsclient --autobahn {url} {agent} || status=1
exit $status
