#!/usr/bin/env bash
# Consumer test: proves that a user installing the packed package can build and
# run a service and a client with it.
#
#   1. npm pack the library (the repo root) and the gateway (packages/gateway)
#      into a temp dir; neither ships the demo; the library and its three
#      peers install at most 8 packages;
#   2. a fresh project outside the repo: examples/service copied in, the tarball
#      installed (both tarballs) with the newest @connectrpc/connect, @connectrpc/connect-node and
#      @bufbuild/protobuf in the peer range, plus typescript, tsx, buf, protoc-gen-es;
#   3. npx buf generate, then npx tsc --noEmit (strict, NodeNext);
#   4. (after the client) `connect-gateway init` writes a service, which is
#      installed from the tarball and must type-check and pass its own test;
#   5. an OAuth2 server (connect-gateway/testing), the example service
#      (server.ts, createGatewayAuth), the gateway (the package's own
#      `connect-gateway serve` bin with examples/service/routes.yaml), all on
#      127.0.0.1 with OS-chosen ports; then client.ts, whose output must show the
#      greeting and the caller identity the service verified.
#
# Usage: scripts/consumer-test.sh
#   NODE_BIN_DIR=/opt/node-22/bin   prefix PATH with this directory (default: the system node)
#   KEEP_WORK=1                     keep the temp directory (printed) for inspection
#   TYPESCRIPT_SPEC=typescript@5    the TypeScript to install (default: typescript@latest)
# Exits 0 when the client printed the expected answer, non-zero otherwise.
set -euo pipefail

if [[ -n "${NODE_BIN_DIR:-}" ]]; then
  [[ -x "$NODE_BIN_DIR/node" ]] || { echo "consumer-test: NODE_BIN_DIR=$NODE_BIN_DIR has no node" >&2; exit 2; }
  export PATH="$NODE_BIN_DIR:$PATH"
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/connect-gateway-consumer.XXXXXX")"
APP="$WORK/app"
LOGS="$WORK/logs"
mkdir -p "$WORK/pack" "$APP" "$LOGS"
START=$SECONDS
PIDS=()

step() { printf '\n==> [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() {
  echo "consumer-test: FAIL: $*" >&2
  for log in "$LOGS"/*.log; do
    [[ -s "$log" ]] || continue
    echo "----- $(basename "$log") (last 40 lines) -----" >&2
    tail -n 40 "$log" >&2
  done
  exit 1
}

cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Up to 5 s to stop, then SIGKILL.
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_WORK:-}" == 1 ]]; then
    echo "consumer-test: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command with a deadline (seconds); its output goes to a log.
bounded() {
  local seconds=$1 log=$2
  shift 2
  if ! timeout --kill-after=10 "$seconds" "$@" >"$LOGS/$log" 2>&1; then
    fail "'$*' failed or took longer than ${seconds}s (see $log)"
  fi
}

# Starts a long-running process in the background, output to a log.
start() {
  local log=$1
  shift
  "$@" >"$LOGS/$log" 2>&1 &
  PIDS+=("$!")
}

# Waits (bounded) until a log has a line matching an extended regexp; prints that line.
wait_for_line() {
  local log=$1 pattern=$2 seconds=$3 pid=${PIDS[-1]}
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    if grep -Eq "$pattern" "$LOGS/$log" 2>/dev/null; then
      grep -Em1 "$pattern" "$LOGS/$log"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "$log: the process exited before printing /$pattern/"
    sleep 0.1
  done
  fail "$log: no line matching /$pattern/ within ${seconds}s"
}

step "node $(node --version), npm $(npm --version) ($(command -v node))"

step "npm pack $REPO (the library) and $REPO/packages/gateway (the gateway)"
# The library first: its prepack builds dist/, which the gateway's build compiles against.
(cd "$REPO" && timeout 300 npm pack --pack-destination "$WORK/pack" >"$LOGS/pack.log" 2>&1) ||
  fail "npm pack failed (see pack.log)"
LIBRARY_TARBALL="$(ls "$WORK"/pack/connect-gateway-*.tgz)"
(cd "$REPO" && timeout 300 npm pack --workspace packages/gateway --pack-destination "$WORK/pack" >"$LOGS/pack-gateway.log" 2>&1) ||
  fail "npm pack --workspace packages/gateway failed (see pack-gateway.log)"
GATEWAY_TARBALL="$(ls "$WORK"/pack/connect-gateway-gateway-*.tgz)"
for tarball in "$LIBRARY_TARBALL" "$GATEWAY_TARBALL"; do
  echo "$tarball ($(du -k "$tarball" | cut -f1) KiB, $(tar -tzf "$tarball" | wc -l) files)"
done
# Each package says what it is and under which licence.
for tarball in "$LIBRARY_TARBALL" "$GATEWAY_TARBALL"; do
  # The list first: grep -q stops reading early, and under pipefail tar's SIGPIPE would fail the check.
  listing="$(tar -tzf "$tarball")"
  for file in package/README.md package/LICENSE; do
    grep -qxF "$file" <<<"$listing" || fail "$(basename "$tarball") ships no ${file#package/}"
  done
done
# Nothing of the demo (examples/) ships in either package.
for tarball in "$LIBRARY_TARBALL" "$GATEWAY_TARBALL"; do
  if tar -tzf "$tarball" | grep -Eq 'example|dev-stack'; then fail "$(basename "$tarball") ships demo files"; fi
done

step "a service's footprint: the library and its three peers, nothing else"
mkdir -p "$WORK/footprint"
(cd "$WORK/footprint" && npm init -y >/dev/null &&
  bounded 600 footprint.log npm install --no-audit --no-fund \
    "$LIBRARY_TARBALL" "@connectrpc/connect@^2.2.0" "@connectrpc/connect-node@^2.2.0" "@bufbuild/protobuf@^2.2.0")
PACKAGES="$(node -e 'const l = require(process.argv[1]); console.log(Object.keys(l.packages).filter((k) => k !== "").join(" "))' \
  "$WORK/footprint/package-lock.json")"
COUNT="$(wc -w <<<"$PACKAGES")"
echo "  $COUNT packages: $PACKAGES"
((COUNT <= 8)) || fail "connect-gateway and its peers install $COUNT packages (at most 8): $PACKAGES"

step "a fresh project in $APP"
cp -R "$REPO/examples/service/." "$APP/"
rm -rf "$APP/node_modules" "$APP/gen"
cp "$REPO/scripts/consumer-test/oauth2-server.ts" "$APP/"
cd "$APP"
# The example's package.json names connect-gateway and the gateway by version; install the tarballs instead.
npm pkg delete dependencies.connect-gateway devDependencies.@connect-gateway/gateway
# oidc-provider: the optional peer connect-gateway/testing's OAuth2 server needs.
bounded 600 install.log npm install --no-audit --no-fund \
  "$LIBRARY_TARBALL" "$GATEWAY_TARBALL" oidc-provider@^9 \
  "@connectrpc/connect@^2.2.0" "@connectrpc/connect-node@^2.2.0" "@bufbuild/protobuf@^2.2.0"
bounded 600 install-dev.log npm install --no-audit --no-fund --save-dev \
  "${TYPESCRIPT_SPEC:-typescript@latest}" tsx@latest @bufbuild/buf@latest @bufbuild/protoc-gen-es@latest \
  "@types/node@^$(node -p 'process.versions.node.split(".")[0]')"
node -e '
  const v = (p) => require(`./node_modules/${p}/package.json`).version;
  for (const p of ["connect-gateway", "@connect-gateway/gateway", "@connectrpc/connect", "@connectrpc/connect-node", "@bufbuild/protobuf",
                   "typescript", "tsx", "@bufbuild/buf", "@bufbuild/protoc-gen-es", "@types/node"])
    console.log(`  ${p}@${v(p)}`);'

step "npx buf generate"
bounded 120 generate.log npx --no-install buf generate
(cd gen && find . -name '*.ts' | sort)
grep -q 'connect_gateway/v1/options_pb' gen/greeter/v1/greeter_pb.ts &&
  { [[ -f gen/connect_gateway/v1/options_pb.ts ]] || fail "gen/greeter/v1/greeter_pb.ts imports options_pb.js, which was not generated"; }

step "npx tsc --noEmit (strict, NodeNext)"
bounded 180 tsc.log npx --no-install tsc --noEmit -p .
echo "  no errors"

step "npx tsc --noEmit again with the newest @types/node (what a bare 'npm install -D @types/node' picks)"
bounded 600 types-latest.log npm install --no-audit --no-fund --save-dev @types/node@latest
echo "  @types/node@$(node -p 'require("./node_modules/@types/node/package.json").version')"
bounded 180 tsc-latest.log npx --no-install tsc --noEmit -p .
echo "  no errors"

step "the service's own test (examples/service/greeter.test.ts): createTestGatewayTransport through the real verification"
bounded 180 app-test.log npx --no-install tsx --test greeter.test.ts
grep -Eq '(#|ℹ) pass 3' "$LOGS/app-test.log" || fail "greeter.test.ts did not pass its 3 tests (see app-test.log)"
grep -Eq '(#|ℹ) fail 0' "$LOGS/app-test.log" || fail "greeter.test.ts failed (see app-test.log)"
echo "  3 tests passed"

step "the OAuth2 server, the service and the gateway, on 127.0.0.1"
export GATEWAY_CLIENT_ID="consumer-test-client"
GATEWAY_CLIENT_SECRET="$(node -p 'require("node:crypto").randomBytes(24).toString("base64url")')"
GATEWAY_HMAC_SECRET="$(node -p 'require("node:crypto").randomBytes(32).toString("hex")')"
export GATEWAY_CLIENT_SECRET GATEWAY_HMAC_SECRET

start oauth.log node --import tsx oauth2-server.ts
OAUTH_JSON="$(wait_for_line oauth.log '^\{"issuer"' 30)"
field() { node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$OAUTH_JSON" "$1"; }
ISSUER="$(field issuer)"
echo "  OAuth2 server  $ISSUER"

start server.log env PORT=0 HOST=127.0.0.1 node --import tsx server.ts
GREETER_URL="$(wait_for_line server.log '^greeter listening on http://' 30 | sed -E 's/.* on //')"
echo "  greeter        $GREETER_URL"

start gateway.log env GREETER_URL="$GREETER_URL" JWKS_URL="$(field jwksUrl)" OAUTH2_ISSUER="$ISSUER" \
  OAUTH2_AUDIENCE="$(field audience)" LOG_LEVEL=warn \
  ./node_modules/.bin/connect-gateway serve --routes routes.yaml --port 0 --host 127.0.0.1
GATEWAY_URL="$(wait_for_line gateway.log '^connect-gateway listening on http://' 30 | sed -E 's/.* on (http:[^ ]+).*/\1/')"
echo "  gateway        $GATEWAY_URL"

step "client.ts through the gateway"
export GATEWAY_URL APPCENTER_URL="$ISSUER" GATEWAY_TOKEN_PATH=/token
bounded 60 client.log node --import tsx client.ts Ada
cat "$LOGS/client.log"
EXPECTED="Hello, Ada! (verified caller: client $GATEWAY_CLIENT_ID, user -, scopes read)"
grep -qxF "$EXPECTED" "$LOGS/client.log" || fail "the client did not print: $EXPECTED"

step "a forged call straight to the service (no gateway signature) is refused"
status="$(curl -s -o "$LOGS/forged.log" -w '%{http_code}' --max-time 10 --http2-prior-knowledge \
  -H 'content-type: application/json' -H "x-client-id: $GATEWAY_CLIENT_ID" \
  -H "x-gateway-timestamp: $(date +%s)" -H "x-gateway-signature: $(printf '0%.0s' {1..64})" \
  --data '{"name":"Mallory"}' "$GREETER_URL/greeter.v1.GreeterService/Greet" || true)"
[[ "$status" == 403 ]] || fail "a forged call got HTTP $status, not 403: $(cat "$LOGS/forged.log")"
echo "  HTTP 403: $(cat "$LOGS/forged.log")"
wait_for_line server.log '^refused POST /greeter.v1.GreeterService/Greet: ' 10 >/dev/null ||
  fail "the service did not log why it refused the forged call (onRejection in examples/service/server.ts)"
echo "  the service logged: $(grep -m1 "^refused " "$LOGS/server.log")"

step "connect-gateway dev from the installed package: the gateway and its development token issuer"
start dev.log env GREETER_URL="$GREETER_URL" LOG_LEVEL=warn \
  ./node_modules/.bin/connect-gateway dev --routes routes.yaml --port 0 --oauth-port 0
wait_for_line dev.log '^Ctrl-C stops it\.' 30 >/dev/null
grep -E '^  export (GATEWAY_URL|APPCENTER_URL)=' "$LOGS/dev.log"
# dev prints `export …` lines to paste into a shell: pasted (in a subshell), they give JWT_SECRET.
DEV_JWT="$(eval "$(grep -E '^  export ' "$LOGS/dev.log")" && printf '%s' "$JWT_SECRET")"
[[ "$DEV_JWT" =~ ^[0-9a-f]{64}$ ]] || fail "the export lines dev printed did not set JWT_SECRET"
DEV_TOKEN="$(JWT_SECRET="$DEV_JWT" ./node_modules/.bin/connect-gateway token --user alice --scopes read)"
[[ "$DEV_TOKEN" == *.*.* ]] || fail "connect-gateway token printed no token: $DEV_TOKEN"
echo "  a user token for alice: ${#DEV_TOKEN} characters"

step "connect-gateway init: a generated service installs, type-checks and passes its own test"
INIT="$WORK/init"
bounded 60 init.log ./node_modules/.bin/connect-gateway init --name order-history --dir "$INIT"
cd "$INIT"
# Run in a project that installed the tarballs, init makes the service depend on those same files: a
# plain `npm install`, as its output says, never asks the registry for connect-gateway.
grep -q '"connect-gateway": "file:' package.json || fail "the generated package.json does not depend on the installed tarball: $(grep connect-gateway package.json)"
bounded 600 init-install.log npm install --no-audit --no-fund
bounded 180 init-typecheck.log npm run typecheck
bounded 180 init-test.log npm test
grep -Eq '(#|ℹ) pass 3' "$LOGS/init-test.log" || fail "the generated service's test did not pass 3 tests (see init-test.log)"
# Its README runs the gateway as `npx connect-gateway dev`: the command must be there.
bounded 60 init-cli.log npx --no-install connect-gateway --version
echo "  typecheck and npm test passed; npx connect-gateway $(cat "$LOGS/init-cli.log")"
cd "$APP"

step "PASS in $((SECONDS - START))s"
