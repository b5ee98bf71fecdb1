#!/usr/bin/env bash
# Checks what `make` cannot install itself: Python 3.11, Java 17+, free disk. Exits 1 with a
# message that says what is missing and how to get it.
set -euo pipefail

PYTHON="${PYTHON:-python3.11}"
MIN_FREE_GB="${MIN_FREE_GB:-6}"
fail() { echo "headrace: prerequisite missing: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 \
  || fail "$PYTHON not found on PATH. Install Python 3.11 (Glue 5.1 and the local lock target it) or set PYTHON=/path/to/python3.11."
py_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$py_version" = "3.11" ] \
  || fail "$PYTHON is Python $py_version; headrace needs Python 3.11 (set PYTHON=/path/to/python3.11)."
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || fail "$PYTHON has no venv/ensurepip module (on Debian: apt-get install python3.11-venv)."

command -v java >/dev/null 2>&1 \
  || fail "java not found on PATH. Local Spark needs Java 17 (on Debian: apt-get install openjdk-17-jre-headless)."
java_major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}')
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] \
  || fail "java is version ${java_major:-unknown}; Spark 3.5 here is tested with Java 17."

free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
[ "$free_kb" -ge $((MIN_FREE_GB * 1024 * 1024)) ] \
  || fail "only $((free_kb / 1024 / 1024)) GB free on $(df -P . | awk 'NR == 2 {print $6}'); the environment and lake need ${MIN_FREE_GB} GB."

echo "prerequisites ok: Python $py_version, Java $java_major, $((free_kb / 1024 / 1024)) GB free"
