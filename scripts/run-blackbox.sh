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
# The tests spend most of their time waiting (fsync, the daemon's timers,
# child processes), so they run PYTEST_JOBS at a time (pytest-xdist, from
# Debian: make deps), by default twice the number of cores. Each test has
# its own daemon, ephemeral ports and temporary directories; tests that
# must not run beside each other share an xdist_group (conftest.py's
# XDIST_GROUPS; --dist loadgroup runs a group on one worker).
# PYTEST_JOBS=0 runs them one after the other in this process.
/usr/bin/python3 -c 'import xdist' 2>/dev/null || { echo "blackbox: pytest-xdist is missing (python3-pytest-xdist); run make deps" >&2; exit 1; }
jobs=${PYTEST_JOBS:-$(($(nproc) * 2))}
if [ "${1:-}" = "--powerloss" ]; then
  # the long test's shards run side by side too; -rP prints each passed
  # test's output (seeds, counts, timings) as -s did
  export POWERLOSS_LONG=1
  exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -rsP -n "$jobs" --dist loadgroup tests/blackbox/test_powerloss.py ${PYTEST_ARGS:-}
fi
exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs -n "$jobs" --dist loadgroup tests/blackbox ${PYTEST_ARGS:-}
