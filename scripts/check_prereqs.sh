#!/usr/bin/env bash
# Checks what `make` cannot install itself: Python 3.12 (the worker, like MWAA 3.3.1's), Python
# 3.11 (the Spark and training jobs, like Glue 5.1's), Java 17+, free disk. Exits 1 with a
# message that says what is missing and how to get it.
set -euo pipefail

WORKER_PYTHON="${WORKER_PYTHON:-python3.12}"
JOB_PYTHON="${JOB_PYTHON:-python3.11}"
MIN_FREE_GB="${MIN_FREE_GB:-8}"
fail() { echo "headrace: prerequisite missing: $*" >&2; exit 1; }

# check_python PATH X.Y WHAT: PATH runs, is Python X.Y, and can make virtualenvs.
check_python() {
  local python="$1" want="$2" what="$3" version
  command -v "$python" >/dev/null 2>&1 \
    || fail "${python:-python$want} not found. Install Python $want ($what) or set its path (WORKER_PYTHON / JOB_PYTHON)."
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$version" = "$want" ] \
    || fail "$python is Python $version; headrace needs Python $want for $what."
  "$python" -c 'import venv, ensurepip' 2>/dev/null \
    || fail "$python has no venv/ensurepip module (on Debian: apt-get install python$want-venv)."
}
check_python "$WORKER_PYTHON" 3.12 "the Airflow worker, as on MWAA 3.3.1"
check_python "$JOB_PYTHON" 3.11 "the Spark and training jobs, as on Glue 5.1"

command -v java >/dev/null 2>&1 \
  || fail "java not found on PATH. Local Spark needs Java 17 (on Debian: apt-get install openjdk-17-jre-headless)."
java_major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}')
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] \
  || fail "java is version ${java_major:-unknown}; Spark 3.5 here is tested with Java 17."

free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
[ "$free_kb" -ge $((MIN_FREE_GB * 1024 * 1024)) ] \
  || fail "only $((free_kb / 1024 / 1024)) GB free on $(df -P . | awk 'NR == 2 {print $6}'); the three environments and the lake need ${MIN_FREE_GB} GB."

echo "prerequisites ok: Python 3.12 and 3.11, Java $java_major, $((free_kb / 1024 / 1024)) GB free"
