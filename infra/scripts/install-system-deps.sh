#!/usr/bin/env bash
# Install the system packages the syndicate needs that pip cannot provide.
# Today: bubblewrap (bwrap), the namespace layer of code-sandbox.
# Idempotent and fast when everything is present: it only touches apt when a
# binary is missing, and refreshes the package index only if the install fails
# without it. Needs root (or sudo) only when something must be installed.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: need root to install ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: installing ${missing[*]}" >&2
# Try without refreshing the index first (fast when the lists are recent); an empty
# or stale index makes the install fail, then refresh once and retry.
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v bwrap >/dev/null 2>&1 || { echo "install-system-deps: bwrap still missing" >&2; exit 1; }
