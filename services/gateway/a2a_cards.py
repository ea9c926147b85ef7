"""The syndicate's A2A Agent Cards, derived from the service registry.

``/.well-known/agent-card.json`` describes the syndicate itself (the router picks the
agent), with one skill per agent of the registry; each agent also answers on its own
endpoint ``/a2a/<agent>``, whose card is ``/a2a/<agent>/.well-known/agent-card.json``
(a task sent there goes straight to that agent). A new agent in the registry is a new
skill and a new endpoint, with nothing to add here.
"""

from __future__ import annotations

from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_1_0, TransportProtocol

from shared import registry

RPC_PATH = "/a2a"  # the auto-routed syndicate; an agent's endpoint is RPC_PATH/<agent>
INPUT_MODES = ["text/plain", "application/octet-stream"]  # text, and files as parts
OUTPUT_MODES = ["text/plain", "application/json"]  # the answer, and code/tests/citations as data
KIND_TAGS = {"code": ["code", "python", "tests", "sandbox"], "reason": ["reasoning", "retrieval", "citations"]}
BEARER = "bearer"
CONVERSATION = ("Messages in one contextId are a conversation (code is edited, its earlier checks kept); "
                "metadata review: true pauses a task in input-required until a message in it approves, "
                "rejects or says what to change.")


def agent_path(agent: str | None) -> str:
    """The JSON-RPC path of ``agent`` (None: the auto-routed syndicate)."""
    return RPC_PATH if agent is None else f"{RPC_PATH}/{agent}"


def card_path(agent: str | None) -> str:
    return AGENT_CARD_WELL_KNOWN_PATH if agent is None else f"{agent_path(agent)}{AGENT_CARD_WELL_KNOWN_PATH}"


def skill(agent: registry.Agent) -> AgentSkill:
    kind = agent.task_kind or agent.name
    return AgentSkill(
        id=agent.name, name=agent.name, description=agent.description,
        # The agent's own card, for a client that wants to reach it directly.
        tags=[*KIND_TAGS.get(kind, [kind]), f"endpoint:{agent_path(agent.name)}"],
        input_modes=INPUT_MODES, output_modes=OUTPUT_MODES,
    )


def agent_card(agent: str | None, base_url: str, *, secured: bool) -> AgentCard:
    """The card of ``agent`` (None: the syndicate, with every agent's skill) at ``base_url``."""
    agents = registry.agents()
    if agent is None:
        name, skills = "Agent Syndicate", [skill(a) for a in agents.values()]
        description = ("Multi-agent llama.cpp on CPU servers over NATS; the router sends each task to "
                       f"an agent ({', '.join(agents)}) or a plan of several. {CONVERSATION}")
    else:
        name, skills = f"syndicate {agent}", [skill(agents[agent])]
        description = f"{agents[agent].description}. {CONVERSATION}"
    card = AgentCard(
        name=name, description=description, version="1",
        supported_interfaces=[AgentInterface(
            url=base_url.rstrip("/") + agent_path(agent), protocol_binding=TransportProtocol.JSONRPC.value,
            protocol_version=PROTOCOL_VERSION_1_0,
        )],
        provider=AgentProvider(organization="Agent Syndicate", url=base_url.rstrip("/")),
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=INPUT_MODES, default_output_modes=OUTPUT_MODES, skills=skills,
    )
    if secured:  # the gateway's API key as a bearer token
        card.security_schemes[BEARER].CopyFrom(SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(
            scheme="Bearer", description="the gateway's API key (SYNDICATE_GATEWAY_API_KEY)")))
        card.security_requirements.append(SecurityRequirement(schemes={BEARER: StringList()}))
    return card
