#!/usr/bin/env bash
# Build the node image's base with no registry: a minimal Debian bookworm root filesystem made
# by debootstrap and turned into an image by `docker import`. Needs root, debootstrap and a
# reachable Debian mirror (about 90 s, about 110 MB). Skipped when the image already exists.
#
#   deploy/build-base-image.sh [TAG]        (default shoal-base:bookworm)
#   DEBIAN_MIRROR=http://... deploy/build-base-image.sh
#
# Where a registry is reachable, skip this and build the node image on python:3.11-slim
# instead (see README.md, "Running under Docker Compose").
set -euo pipefail

tag="${1:-shoal-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag exists; nothing to do"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 2; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
# python3-venv brings ensurepip, which puts pip into the image's venv with no download.
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >/dev/null
# Package lists and caches only make the image bigger.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "built $tag"
