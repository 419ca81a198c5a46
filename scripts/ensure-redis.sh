#!/usr/bin/env bash
# The gateway's shared rate limit is tested against a real redis-server. Install
# it from Debian's packages when it is missing and we may (root, apt-get);
# otherwise say exactly what to do.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server (Debian package) for the gateway's rate-limit tests…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  exit 0
fi
echo "redis-server is needed by the tests: install it (e.g. 'sudo apt-get install redis-server')." >&2
exit 1
