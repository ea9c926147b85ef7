#!/usr/bin/env bash
# Build the images' base locally: a minimal Debian root filesystem with Python 3 made by
# mmdebstrap from Debian's own packages, imported as a podman image. For machines that
# reach Debian's archive but no container registry (the official python image cannot be
# pulled there). The images then build with --build-arg BASE_IMAGE=<this image>.
#
#   infra/containers/base-image.sh            # builds it once; a no-op when it exists
#   SYNDICATE_BASE_REBUILD=1 infra/containers/base-image.sh   # build it again
#
# What it holds, to stand in for python:3.11-slim-bookworm: Debian's python3 (3.11 on
# bookworm) with venv, `python` on PATH, passwd (useradd), ca-certificates, LANG=C.UTF-8;
# bookworm, bookworm-updates and bookworm-security as apt sources (the Dockerfile's
# apt-get installs use them); no man pages, docs or locales (dpkg excludes them, also
# for later installs), and apt keeps no package caches in a layer (apt-docker-clean.conf,
# as in Debian's own container images). Needs root (mmdebstrap, podman) and ~30 s to several minutes,
# depending on the mirror.
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE="${SYNDICATE_BASE_IMAGE:-localhost/syndicate/debian-python:bookworm}"
RELEASE="${DEBIAN_RELEASE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

if podman image exists "$IMAGE" && [ -z "${SYNDICATE_BASE_REBUILD:-}" ]; then
  echo "base-image: $IMAGE exists (SYNDICATE_BASE_REBUILD=1 builds it again)" >&2
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "base-image: building Debian $RELEASE with python3 (mmdebstrap)" >&2
mmdebstrap --variant=minbase --quiet \
  --include=python3,python3-venv,python-is-python3,passwd,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='cp infra/containers/apt-docker-clean.conf "$1"/etc/apt/apt.conf.d/docker-clean' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  "$RELEASE" "$work/rootfs.tar" \
  "deb $MIRROR $RELEASE main" \
  "deb $MIRROR $RELEASE-updates main" \
  "deb $SECURITY $RELEASE-security main"

podman import \
  --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV=LANG=C.UTF-8' \
  --change 'CMD=["python3"]' \
  --message "mmdebstrap --variant=minbase $RELEASE + python3 (infra/containers/base-image.sh)" \
  "$work/rootfs.tar" "$IMAGE" >/dev/null
echo "base-image: $IMAGE ($(podman run --rm "$IMAGE" python3 --version))" >&2
