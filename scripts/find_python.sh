#!/usr/bin/env bash
# Prints the path of a CPython X.Y interpreter: pythonX.Y on PATH, else a pyenv-installed one.
# Usage: scripts/find_python.sh 3.12   (exits 1, saying what to install, when none is found)
set -euo pipefail
want="$1"
is_version() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; }
candidates=("python$want")
if command -v pyenv >/dev/null 2>&1; then
  for dir in "$(pyenv root)"/versions/"$want"*/bin; do candidates+=("$dir/python"); done
fi
for candidate in "${candidates[@]}"; do
  if path=$(command -v "$candidate" 2>/dev/null) && is_version "$path"; then
    # The interpreter itself, not a launcher (a pyenv shim needs pyenv on PATH to run).
    "$path" -c 'import sys; print(sys.executable)'; exit 0
  fi
done
echo "headrace: prerequisite missing: Python $want (python$want on PATH, or installed with pyenv)" >&2
exit 1
