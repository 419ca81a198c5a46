#!/usr/bin/env bash
# Runs the whole test suite (`npm test`) in this checkout over a matrix of
#   Node majors     22, 24 (official binaries from scripts/node-runtime.sh)
#   connect flavour lockfile  @connectrpc/connect(-node) as `npm ci` installs them
#                   newest    newest release in package.json's peer range
#                   lowest    lowest release in that range, only when it is not
#                             already the lockfile's version
# The newest/lowest flavours swap @connectrpc/connect and @connectrpc/connect-node
# in node_modules with `npm install --no-save` (package.json and package-lock.json
# are left alone); node_modules is NOT put back at the end -- CI runs in a
# throwaway clone; locally, run `npm ci` afterwards (the script says so). A
# failing combination is reported and the rest still run; the exit status is
# non-zero when any failed. npm itself runs on whichever node is first on PATH.
#
# Env: CI_MATRIX_NODE_MAJORS (default "22 24"), NODE_RUNTIME_CACHE (see node-runtime.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a majors <<<"${CI_MATRIX_NODE_MAJORS:-22 24}"
CONNECT=@connectrpc/connect
CONNECT_NODE=@connectrpc/connect-node

log() { echo "ci-matrix: $*" >&2; }
die() { log "error: $*"; exit 2; }

# Version installed in node_modules / pinned in package-lock.json ("" if none).
installed() { node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
  "$PWD/node_modules/$1/package.json"; }
locked() { node -e 'const p = require(process.argv[1]).packages?.["node_modules/" + process.argv[2]]; console.log(p?.version ?? "")' \
  "$PWD/package-lock.json" "$1"; }
# Published versions of $1 matching range $2, one a line, lowest first.
published() {
  local json
  json="$(npm view "$1@$2" version --json)" || return 1
  printf '%s' "$json" | node -e 'const v = JSON.parse(require("fs").readFileSync(0, "utf8")); for (const x of [].concat(v)) console.log(x)' \
    | sort -V
}

# --- Node runtimes -----------------------------------------------------------
declare -A node_dir
for m in "${majors[@]}"; do
  node_dir[$m]="$(bash scripts/node-runtime.sh "$m")" || die "no Node $m runtime"
done

# --- connect versions ----------------------------------------------------------
range="$(node -p "require('./package.json').peerDependencies['$CONNECT']")"
lock_connect="$(locked "$CONNECT")"
lock_connect_node="$(locked "$CONNECT_NODE")"
[ -n "$lock_connect" ] && [ -n "$lock_connect_node" ] || die "package-lock.json pins no $CONNECT / $CONNECT_NODE"
connect_versions="$(published "$CONNECT" "$range")" || die "could not list $CONNECT@$range from the npm registry"
connect_node_versions="$(published "$CONNECT_NODE" "$range")" || die "could not list $CONNECT_NODE@$range from the npm registry"
# Only versions published for both packages are candidates.
candidates="$(grep -Fxf <(printf '%s\n' "$connect_node_versions") <<<"$connect_versions" || true)"
[ -n "$candidates" ] || die "no version of $CONNECT and $CONNECT_NODE is published in '$range'"
lowest="$(head -n 1 <<<"$candidates")"
newest="$(tail -n 1 <<<"$candidates")"
log "peer range $range: lowest $lowest, newest $newest; lockfile $lock_connect"

# The lockfile flavour needs node_modules exactly as `npm ci` leaves it (a previous
# local matrix run may have left another connect version in place).
if [ "$(installed "$CONNECT")" != "$lock_connect" ] || [ "$(installed "$CONNECT_NODE")" != "$lock_connect_node" ]; then
  log "node_modules does not hold the lockfile's $CONNECT $lock_connect: running npm ci"
  npm ci --no-audit --no-fund
fi

# --- the runs ------------------------------------------------------------------
results=()   # "PASS|FAIL|SKIP<TAB>label<TAB>detail"
failed=0
matrix_start=$SECONDS

# run_suite FLAVOUR: npm test under each Node major, with whatever connect is installed.
run_suite() {
  local flavour="$1" m dir nv cv label t0 dt
  cv="$(installed "$CONNECT")"
  for m in "${majors[@]}"; do
    dir="${node_dir[$m]}"
    nv="$(PATH="$dir:$PATH" node --version)"
    label="node $nv, $CONNECT $cv ($flavour)"
    echo
    echo "== test: $label"
    t0=$SECONDS
    if PATH="$dir:$PATH" npm test; then
      dt=$((SECONDS - t0))
      results+=("PASS"$'\t'"$label"$'\t'"${dt}s")
    else
      dt=$((SECONDS - t0))
      echo "FAILED: node $nv, connect $cv"
      results+=("FAIL"$'\t'"$label"$'\t'"${dt}s")
      failed=$((failed + 1))
    fi
  done
}

# install_connect FLAVOUR VERSION: swap in both packages at VERSION; on failure the
# flavour's runs are recorded as failed.
install_connect() {
  local flavour="$1" v="$2" m
  echo
  echo "== install: $CONNECT@$v $CONNECT_NODE@$v ($flavour)"
  # connect-web (dev only: the browser test) pins its peer to its own exact
  # version and is released with connect: move it along. connect-express/
  # -fastify pin theirs too but are not published for every connect version;
  # --loglevel=error: npm prints pages of "overriding peer dependency" warnings.
  if npm install --no-save --no-audit --no-fund --loglevel=error "$CONNECT@$v" "$CONNECT_NODE@$v" \
    "@connectrpc/connect-web@$v" \
    && [ "$(installed "$CONNECT")" = "$v" ] && [ "$(installed "$CONNECT_NODE")" = "$v" ]; then
    return 0
  fi
  echo "FAILED: could not install $CONNECT@$v and $CONNECT_NODE@$v"
  for m in "${majors[@]}"; do
    echo "FAILED: node $(PATH="${node_dir[$m]}:$PATH" node --version), connect $v"
    results+=("FAIL"$'\t'"node $(PATH="${node_dir[$m]}:$PATH" node --version), $CONNECT $v ($flavour)"$'\t'"install failed")
    failed=$((failed + 1))
  done
  return 1
}

run_suite lockfile

if [ "$newest" = "$lock_connect" ]; then
  results+=("SKIP"$'\t'"$CONNECT $newest (newest)"$'\t'"same as the lockfile's")
elif install_connect newest "$newest"; then
  run_suite newest
fi

if [ "$lowest" = "$lock_connect" ]; then
  results+=("SKIP"$'\t'"$CONNECT $lowest (lowest)"$'\t'"same as the lockfile's")
elif [ "$lowest" = "$newest" ]; then
  results+=("SKIP"$'\t'"$CONNECT $lowest (lowest)"$'\t'"same as newest")
elif install_connect lowest "$lowest"; then
  # An explicit --no-save install needs no `npm ci` in between.
  run_suite lowest
fi

# --- summary -------------------------------------------------------------------
echo
echo "== matrix summary ($((SECONDS - matrix_start))s)"
for r in "${results[@]}"; do
  IFS=$'\t' read -r status label detail <<<"$r"
  printf '  %-4s  %s  [%s]\n' "$status" "$label" "$detail"
done
if [ "$(installed "$CONNECT")" != "$lock_connect" ] && [ "${CI:-}" != "true" ]; then
  echo "note: node_modules now holds $CONNECT $(installed "$CONNECT"), not the lockfile's $lock_connect: run 'npm ci' to restore it."
fi
if [ "$failed" -gt 0 ]; then
  echo "matrix: $failed combination(s) FAILED"
  exit 1
fi
echo "matrix: all combinations passed"
