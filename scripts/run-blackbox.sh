#!/bin/sh
# Black-box tests: the real daemon on ephemeral loopback ports, driven by
# real clients (curl, tus-js-client, awscli, raw sockets). pytest prints
# the closing "N passed, N failed" line.
#   --chaos      run the long chaos suite instead of the quick one
#   --powerloss  run the long power-cut suite (hundreds of cuts on lossyfs)
#   PYTEST_ARGS  extra arguments, e.g. PYTEST_ARGS="-k tus"
set -eu
cd "$(dirname "$0")/.."
# The npm test tools are needed, not optional: without them this fails here
# rather than letting the tests that use them skip.
sh scripts/node-deps.sh || { echo "blackbox: cannot install the npm test tools (sh scripts/node-deps.sh); run make deps" >&2; exit 1; }
sh scripts/promtool.sh >/dev/null || { echo "blackbox: cannot get promtool (sh scripts/promtool.sh); the metrics test needs it" >&2; exit 1; }
sh scripts/promtool.sh prometheus >/dev/null || { echo "blackbox: cannot get the Prometheus server (sh scripts/promtool.sh prometheus); test_prometheus.py needs it" >&2; exit 1; }
mkdir -p tests/artifacts
if [ "${1:-}" = "--chaos" ]; then
  export CHAOS_LONG=1
  exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs -s tests/blackbox/test_chaos.py ${PYTEST_ARGS:-}
fi
if [ "${1:-}" = "--powerloss" ]; then
  export POWERLOSS_LONG=1
  exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs -s tests/blackbox/test_powerloss.py ${PYTEST_ARGS:-}
fi
exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs tests/blackbox ${PYTEST_ARGS:-}
