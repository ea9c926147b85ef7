"""The parts of compose.yaml that name the syndicate's services, rendered from the service
registry: the NATS server's password variables, one compose service per registry entry
(pinned per the committed EPYC placement plan) and the volumes they keep. The rest of
compose.yaml (infrastructure, anchors, tools) is written by hand.

Each part stands between ``# >>> generated: NAME`` and ``# <<< generated: NAME`` lines;
``syndicate deploy manifests --write`` rewrites them and ``tests/deploy`` fails when the
committed file differs from what this renders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.registry import SERVICES, Service, nats_users
from syndicate.deploy import Pinning, cpusets_from_plan, password_env

EPYC_PLAN = Path("infra") / "placement" / "epyc-7502p.json"
CREDENTIALS_HINT = "run syndicate deploy credentials --out .env"
SANDBOX_OPTIONS = """\
    # bubblewrap needs what Docker's defaults forbid: unshare/clone of user namespaces and
    # mount/pivot_root (seccomp), mounts (AppArmor docker-default), and a fresh /proc in
    # its pid namespace (masked /proc paths: systempaths). The service applies its own
    # seccomp filter, rlimits and namespaces to every untrusted program; see docs/deploy.md.
    security_opt:
      - "no-new-privileges:true"
      - "seccomp:unconfined"
      - "apparmor:unconfined"
      - "systempaths=unconfined"
    mem_limit: 8g
    pids_limit: 2048
"""


def secret(user: str) -> str:
    """The compose interpolation of ``user``'s NATS password (refused when unset)."""
    return f"${{{password_env(user)}:?{CREDENTIALS_HINT}}}"


def render_parts(repo: Path) -> dict[str, str]:
    """Generated part name -> its lines (for compose.yaml in ``repo``)."""
    pins = cpusets_from_plan(json.loads((repo / EPYC_PLAN).read_text()))
    passwords = "".join(f"      {password_env(user)}: {secret(user)}\n" for user, _ in nats_users())
    services = "\n".join(_service(svc, pins[svc.name]) for svc in SERVICES)
    volumes = "".join(f"  {svc.deployment.state_volume}:\n" for svc in SERVICES if svc.deployment.state_volume)
    return {"nats-passwords": passwords, "services": services, "volumes": volumes}


def _service(svc: Service, pin: Pinning) -> str:
    d = svc.deployment
    lines = [f"  {svc.name}:", "    <<: *service", f"    image: syndicate/{svc.image}:${{SYNDICATE_TAG:-latest}}"]
    if svc.image == "agent":
        lines.append("    build: *agent-build")
    else:
        lines += ["    build:", "      context: .", "      dockerfile: infra/docker/Dockerfile", f"      target: {svc.image}"]
    lines.append(f'    cpuset: "{pin.cpuset}"')
    if d.needs:
        lines += ["    depends_on:", "      <<: *depends"]
        lines += [f"      {need}: {{ condition: service_healthy }}" for need in d.needs]
    block = "\n".join(lines) + "\n"
    if svc.image == "sandbox":
        block += SANDBOX_OPTIONS
    if svc.image != "agent":
        block += "    volumes: []\n"  # no models: nothing of the roster is needed
    elif d.state_volume:
        block += f"    volumes:\n      - models:/models:ro\n      - {d.state_volume}:/var/lib/syndicate  # outlives the container\n"
    if svc.image == "gateway":
        block += '    ports:\n      - "8080:8080"  # OpenAI-compatible API, /metrics and the console (/ui)\n'
    block += "    environment:\n      <<: *env\n"
    block += f"      SYNDICATE_SERVICE: {svc.name}\n"
    block += "".join(f'      {key}: "{value}"\n' for key, value in pin.env.items() if key in ("SYNDICATE_CPUS", "OMP_NUM_THREADS"))
    block += f"      OTEL_SERVICE_NAME: {svc.name}\n"
    block += f"      SYNDICATE_NATS_URL: nats://{svc.name}:{secret(svc.name)}@nats:4222\n"
    if svc.image == "gateway":  # the console links each task's trace to Jaeger's UI (published below)
        block += "      SYNDICATE_GATEWAY_JAEGER_URL: ${SYNDICATE_GATEWAY_JAEGER_URL:-http://localhost:16686}\n"
    block += "    healthcheck:\n      <<: *health\n"
    if svc.image != "agent":
        block += "      start_period: 30s\n"
    block += f'      test: ["CMD", "python", "-m", "shared.health", "{svc.name}"]\n'
    return block


def apply_parts(text: str, parts: dict[str, str]) -> str:
    """``text`` with every generated part replaced (ValueError when a marker is missing)."""
    for name, body in parts.items():
        pattern = re.compile(rf"(?ms)^([ \t]*# >>> generated: {re.escape(name)}[^\n]*\n).*?^([ \t]*# <<< generated: {re.escape(name)}\n)")
        m = pattern.search(text)
        if m is None:
            raise ValueError(f"compose.yaml has no generated part {name!r}")
        text = text[: m.start()] + m.group(1) + body + m.group(2) + text[m.end():]
    return text


def render(repo: Path) -> str:
    """compose.yaml of ``repo`` as it should be."""
    return apply_parts((repo / "compose.yaml").read_text(), render_parts(repo))
