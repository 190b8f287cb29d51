#!/usr/bin/env bash
# Install cog and everything it needs on a fresh machine: Python packages (pip) and
# WordNet 3.0 (Debian's wordnet-base + wordnet-sense-index where apt-get exists; elsewhere
# cog falls back to nltk.download('wordnet') on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ ! -f /usr/share/wordnet/data.noun ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if ! { $SUDO apt-get update -qq &&
         $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           wordnet-base wordnet-sense-index >/dev/null; }; then
    echo "warning: Debian's WordNet could not be installed; cog will try nltk.download" >&2
  fi
fi

# faiss-cpu: approximate kNN for cog-tldr (--knn faiss); small, and its test then runs in CI
$PY -m pip install -q -e ".[dev,faiss]"
# Find WordNet 3.0 now (nltk data, nltk.download, Debian) so the first real run is quiet.
$PY -m cog.concepts.wordnet
