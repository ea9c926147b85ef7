#!/usr/bin/env bash
# `make fresh-check`: the README's two commands on a fresh machine, as a new user types them.
# A container from the local Debian base (infra/containers/base-image.sh: Debian's python3
# and nothing else: no caches, no compiler, no bubblewrap, no kubectl) gets a clean clone
# of HEAD (committed work only), then runs, in order and timed:
#   prepare     apt-get install make      (the one thing the README assumes besides Python)
#   make run    install, fetch models, start the stack, solve the demo (the stack stays up)
#   make test   with that stack still up, as the README orders them
#   make stop   stops the stack of `make run`
# and ends with one summary: each command's exit code and seconds, the pytest summary
# line, and the tail of any failure. Logs stay in .fresh-check/<time>/. Exit 0 only when
# `make run` and `make test` both exit 0.
#
# The container: its own network (netavark; PyPI and Debian reached as from the host),
# root inside, --privileged with a private cgroup namespace (code-sandbox's full tier
# needs user namespaces, an unmasked /proc and a writable cgroup subtree: the container's
# own, never the host's), --init (orphans reaped, as a real init does), 2 GB /dev/shm,
# no pids limit, the first 2 CPUs. Hosts whose HTTPS goes through an intercepting proxy
# need its CA: the host's bundle is mounted read-only over the container's (as for
# `make images`). Needs root and podman (`make fresh-check` installs it as `make images`
# does). Takes 30-45 min on 2 cores: the llama.cpp compile, 1.7 GB of models, the suite.
#
# The whole script is one function, read before it runs: a checkout that changes under a
# 40-minute run (a merge into the same tree) cannot change what this run does.
#
# Environment: FRESH_SKIP_RUN=1 (only `make test`: a machine that never ran `make run`),
# FRESH_CPUS (cpuset, default the first 2 of this host), FRESH_KEEP=1 (keep
# the container for a look: podman exec -it NAME bash), FRESH_LOG_DIR, SYNDICATE_BASE_IMAGE,
# SYNDICATE_BUILD_CA (the CA bundle to mount), FRESH_RUN_TIMEOUT / FRESH_TEST_TIMEOUT (s).
set -euo pipefail

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  REPO=$PWD
  export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/infra/containers/containers.conf}"
  BASE="${SYNDICATE_BASE_IMAGE:-localhost/syndicate/debian-python:bookworm}"
  CA="${SYNDICATE_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
  CPUS="${FRESH_CPUS:-$(python3 -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0))[:2])))')}"
  RUN_TIMEOUT="${FRESH_RUN_TIMEOUT:-3600}"
  TEST_TIMEOUT="${FRESH_TEST_TIMEOUT:-5400}"
  OUT="${FRESH_LOG_DIR:-$REPO/.fresh-check/$(date +%Y%m%d-%H%M%S)}"
  NAME="syndicate-fresh-$$"
  DEST=/root/syndicate

  command -v podman >/dev/null || { echo "fresh-check: podman missing (make fresh-check installs it)" >&2; exit 2; }
  sha=$(git rev-parse HEAD)
  mkdir -p "$OUT"
  work=$(mktemp -d)
  cleanup() {
    if [ -n "${FRESH_KEEP:-}" ]; then
      echo "fresh-check: kept container $NAME (podman exec -it $NAME bash; podman rm -f $NAME)" >&2
    else
      podman rm -f -t 5 "$NAME" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
  }
  trap cleanup EXIT

  echo "fresh-check: commit ${sha:0:7} ($(git log -1 --format=%s "$sha" | cut -c1-70))"
  [ -z "$(git status --porcelain --untracked-files=no)" ] ||
    echo "fresh-check: note: uncommitted changes here are not part of the check (it clones HEAD)"
  git clone -q --no-hardlinks "$REPO" "$work/src"
  git -C "$work/src" checkout -q --detach "$sha"

  SYNDICATE_BASE_IMAGE="$BASE" bash infra/containers/base-image.sh
  run_args=(--detach --name "$NAME" --hostname fresh --init --privileged --cgroupns=private
            --shm-size=2g --pids-limit=-1 --cpuset-cpus="$CPUS")
  # uv trusts its own built-in roots unless told to use the system's store (the mounted bundle).
  [ -f "$CA" ] && run_args+=(--volume "$CA:/etc/ssl/certs/ca-certificates.crt:ro" --env UV_SYSTEM_CERTS=1)
  podman run "${run_args[@]}" "$BASE" sleep infinity >/dev/null
  podman exec "$NAME" mkdir -p "$DEST"
  podman cp "$work/src/." "$NAME:$DEST"
  echo "fresh-check: container $NAME from $BASE, CPUs $CPUS, logs in $OUT"

  names=() rcs=() secs=()
  # step NAME TIMEOUT COMMAND: run COMMAND in the clone inside the container, log and time it.
  step() {
    local name=$1 limit=$2 cmd=$3 start rc
    if [ -n "${timed_out:-}" ]; then  # the timed-out command may still run in the container
      names+=("$name") rcs+=("-") secs+=(0); echo "== $name: skipped ($timed_out did not finish)"; return 0
    fi
    echo "== $name  ($(date +%H:%M:%S), log $OUT/${name// /-}.log)"
    start=$(date +%s)
    set +e
    # The command's own exit code, written inside the container: a signalled `podman exec`
    # can exit 0 while the command still runs (seen when the run was interrupted).
    timeout --kill-after=30 "$limit" podman exec -w "$DEST" "$NAME" bash -c "$cmd; echo \$? >/tmp/fresh-rc" >"$OUT/${name// /-}.log" 2>&1
    rc=$?
    inner=$(podman exec "$NAME" cat /tmp/fresh-rc 2>/dev/null)
    podman exec "$NAME" rm -f /tmp/fresh-rc >/dev/null 2>&1
    set -e
    if [ $rc -eq 0 ]; then rc=${inner:-137}; fi  # no exit code written: the command never finished
    names+=("$name") rcs+=("$rc") secs+=("$(( $(date +%s) - start ))")
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then timed_out=$name; echo "   $name ended by a signal (timeout after $limit s, or interrupted)" >>"$OUT/${name// /-}.log"; fi
    echo "   rc $rc in ${secs[-1]} s"
    return 0
  }

  step "prepare" 900 "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make >/dev/null"
  # The stack of `make run`, as `syndicate status` shows it: one "service pid state restarts"
  # line per service, and code-sandbox's isolation tier.
  snapshot() {
    podman exec -w "$DEST" "$NAME" bash -c ".venv/bin/python -m syndicate.cli status --json 2>/dev/null" 2>/dev/null |
      python3 -c 'import json, sys
for r in sorted(json.load(sys.stdin)["services"], key=lambda r: r["service"]):
    print(r["service"], r["pid"], r["state"], r["restarts"], (r["details"] or {}).get("isolation", ""))' 2>/dev/null || true
  }

  if [ -n "${FRESH_SKIP_RUN:-}" ]; then
    step "make test" "$TEST_TIMEOUT" "make test"
    stack="none (FRESH_SKIP_RUN: make test on a machine that never ran make run)"
    tier="n/a (no stack)"
  else
    step "make run" "$RUN_TIMEOUT" "make run"
    before=$(snapshot)
    tier=$(awk '$1 == "code-sandbox" {print $5}' <<<"$before")
    step "make test" "$TEST_TIMEOUT" "make test"
    after=$(snapshot)
    # make test must leave make run's stack alone: the same processes, none restarted, all serving.
    if [ -z "$before" ]; then stack="no stack after make run"
    elif [ "$before" = "$after" ] && ! awk '$3 != "ready" && $3 != "degraded" {bad=1} END {exit !bad}' <<<"$after"; then
      stack="untouched by make test ($(wc -l <<<"$after") services, same pids, none restarted, all serving)"
    else
      stack="CHANGED by make test"$'\n'"    before: ${before//$'\n'/; }"$'\n'"    after:  ${after//$'\n'/; }"
    fi
    step "make stop" 300 "make stop"
  fi

  pytest_line=$(grep -aE '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$OUT/make-test.log" 2>/dev/null | tail -1 | sed 's/=//g; s/^ *//; s/ *$//' || true)
  demo=$(grep -aE '^status: ' "$OUT/make-run.log" 2>/dev/null | tail -1 || true)
  # The container sees the host's /proc/cpuinfo: its llama.cpp target is the host's.
  built=$(cat "$OUT"/make-*.log 2>/dev/null | grep -aoE 'building llama-cpp-python [^ ]+ for [a-z0-9]+' | tail -1 | awk '{print $NF}' || true)
  cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), AVX-512 $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"

  echo
  echo "================ fresh-check summary ================"
  # The clone's commit: HEAD here may have moved while the check ran.
  echo "commit ${sha:0:7}, base $BASE, CPUs $CPUS, load $(cut -d' ' -f1-3 /proc/loadavg)"
  for i in "${!names[@]}"; do
    printf '  %-10s rc %-3s %6s s\n' "${names[$i]}" "${rcs[$i]}" "${secs[$i]}"
  done
  echo "  demo:       ${demo:-no status line}"
  echo "  sandbox:    code-sandbox isolation tier in the container: ${tier:-?}"
  echo "  llama.cpp:  built for ${built:-? (no build in the logs)}; host CPU $cpu"
  echo "  stack:      $stack"
  echo "  pytest:     ${pytest_line:-no pytest summary line}"
  for i in "${!names[@]}"; do
    if [ "${rcs[$i]}" != 0 ] && [ "${rcs[$i]}" != - ]; then
      echo "---- tail of ${names[$i]} (rc ${rcs[$i]}):"
      tail -n 40 "$OUT/${names[$i]// /-}.log" | cut -c1-300
    fi
  done
  ok=1
  for i in "${!names[@]}"; do
    case "${names[$i]}" in "make run"|"make test"|prepare) [ "${rcs[$i]}" = 0 ] || ok=0 ;; esac
  done
  [[ "$stack" == untouched* ]] || [ -n "${FRESH_SKIP_RUN:-}" ] || ok=0
  if [ $ok = 1 ]; then echo "fresh-check: PASS (logs: $OUT)"; exit 0; fi
  echo "fresh-check: FAIL (logs: $OUT)"; exit 1
}

main "$@"
