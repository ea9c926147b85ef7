#!/usr/bin/env bash
# Install the system packages the syndicate needs that pip cannot provide.
#   install-system-deps.sh              bubblewrap (bwrap), the namespace layer of code-sandbox, and
#                                       chromium, the real browser the console's tests drive, and
#                                       numpy for the box's Debian interpreter (/usr/bin/python3:
#                                       evolution scorers such as examples/evolve/binpack-weibull),
#                                       and libpython3.11, which the OpenTelemetry collector the
#                                       trace tests start (PyPI rotel's rotel-agent) links against
#                                       (Debian's python3 alone lacks it: make fresh-check)
#   install-system-deps.sh build        a C/C++ compiler (g++), for the once-per-machine
#                                       llama-cpp-python build (llama-wheel.sh asks for it
#                                       only when it has no cached wheel to reuse)
#   install-system-deps.sh containers   what `make images` / `make compose-test` need: podman
#                                       with runc, buildah, mmdebstrap, catatonit (init: true),
#                                       netavark + aardvark-dns (networks, service names), iptables
# Idempotent and fast when everything is present: it only touches apt when a binary is
# missing, and refreshes the package index only if the install fails without it. Needs
# root (or sudo) only when something must be installed.
set -euo pipefail

# Each entry: a command on PATH (or an absolute path) and the Debian package providing it.
case "${1:-sandbox}" in
  sandbox) wanted=(bwrap=bubblewrap chromium=chromium /usr/lib/python3/dist-packages/numpy/__init__.py=python3-numpy
                 /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0=libpython3.11) ;;
  build) wanted=(g++=g++) ;;
  containers)
    wanted=(podman=podman runc=runc buildah=buildah mmdebstrap=mmdebstrap
            /usr/libexec/podman/catatonit=catatonit /usr/lib/podman/netavark=netavark
            /usr/lib/podman/aardvark-dns=aardvark-dns iptables=iptables) ;;
  *) echo "install-system-deps: unknown set ${1} (sandbox | build | containers)" >&2; exit 2 ;;
esac

present() { if [[ "$1" == /* ]]; then [ -e "$1" ]; else command -v "$1" >/dev/null 2>&1; fi; }
missing=()
for entry in "${wanted[@]}"; do
  present "${entry%%=*}" || missing+=("${entry#*=}")
done

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
for entry in "${wanted[@]}"; do
  present "${entry%%=*}" || { echo "install-system-deps: ${entry%%=*} still missing" >&2; exit 1; }
done
