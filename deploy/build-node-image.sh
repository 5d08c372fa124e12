#!/usr/bin/env bash
# Build the Shoal node image from this checkout with no network inside the build: pip builds
# wheels of Shoal and its dependencies on this machine, the image installs them offline.
#
#   deploy/build-node-image.sh [TAG]                       (default shoal-node:dev)
#   BASE=python:3.11-slim deploy/build-node-image.sh       (where a registry is reachable)
#   PYTHON=python3.11 deploy/build-node-image.sh           (the Python whose pip builds the
#                                                           wheels: its version must match
#                                                           the image's, 3.11)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
tag="${1:-shoal-node:dev}"
base="${BASE:-shoal-base:bookworm}"
python="${PYTHON:-python3}"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
"$python" -m pip wheel -q --disable-pip-version-check --wheel-dir "$context/wheels/deps" "$repo"
mkdir "$context/wheels/shoal"
mv "$context"/wheels/deps/shoal-*.whl "$context/wheels/shoal/"
cp "$here/Dockerfile" "$here/entrypoint.sh" "$context/"
docker build -q --build-arg BASE="$base" -t "$tag" "$context" >/dev/null
echo "built $tag"
