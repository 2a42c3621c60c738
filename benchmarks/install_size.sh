#!/usr/bin/env bash
# Install size and time of serving (requirements.txt) vs training (requirements-train.txt), each into a
# fresh virtual environment. Run from the repository root; pip's cache makes the times those of a warm cache.
set -euo pipefail
for kind in serve train; do
  target=$(mktemp -d)/venv
  python3 -m venv "$target"
  requirements=requirements.txt; [ "$kind" = train ] && requirements=requirements-train.txt
  start=$(date +%s.%N)
  "$target/bin/pip" install -q --disable-pip-version-check -r "$requirements" > /dev/null
  end=$(date +%s.%N)
  size=$(du -sm "$target"/lib/python3*/site-packages | cut -f1)
  echo "$kind: $(echo "$end - $start" | bc) s, ${size} MB"
  rm -rf "$(dirname "$target")"
done
