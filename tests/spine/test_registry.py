"""The service registry is the one list of services: what a new entry changes, with the
worked example of docs/architecture.md (a `critic` agent) added for the test only."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from services.gateway import openai_schema
from services.router.routing import rule_route
from shared import registry, subjects
from shared.contracts import AgentJob, TaskSubmit
from shared.topology import default_roles
from syndicate import k8s_manifests

CRITIC = registry.Agent("critic", "critic-agent: reviews an answer")
ENTRY = registry.Service("critic-agent", "services.critic_agent", "agent", agent=CRITIC, role="critic", weight=1,
                         deployment=registry.AGENT_DEPLOYMENT)


@pytest.fixture
def with_critic(monkeypatch: pytest.MonkeyPatch) -> registry.Service:
    monkeypatch.setattr(registry, "SERVICES", (*registry.SERVICES, ENTRY))
    return ENTRY


def test_a_new_agent_gets_its_user_jobs_and_a_place_in_the_router(with_critic: registry.Service) -> None:
    users = dict(registry.nats_users())
    assert users["critic-agent"].subscribe_allow()[0] == subjects.job_subject("critic")
    assert {subjects.STEP_RESULT, subjects.task_events("*")} <= set(users["critic-agent"].publish_allow())
    assert subjects.job_subject("critic") in users["router"].publish_allow()
    # ... and serves its model to model requests like every agent
    assert {registry.MODEL_GENERATE, subjects.MODEL_CANCEL} <= set(users["critic-agent"].subscribe_allow())
    assert registry.MODEL_EVENTS in users["critic-agent"].publish_allow()
    assert "critic" in registry.agent_names() and registry.service_for_role("critic") == "critic-agent"
    job = AgentJob(task_id="t-1", step_id="t-1.1", agent="critic", text="review", deadline=1.0)
    assert job.agent == "critic"
    assert rule_route(TaskSubmit(text="Is this right?", agent="critic")) == ["critic"]


def test_a_new_agent_gets_a_valid_kubernetes_deployment(with_critic: registry.Service) -> None:
    docs = [d for d in yaml.safe_load_all(k8s_manifests.render_service(with_critic)) if d]
    assert [d["kind"] for d in docs] == ["Deployment", "PodDisruptionBudget"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "services.critic_agent"]
    assert container["resources"]["requests"] == container["resources"]["limits"]  # pinned: Guaranteed QoS


def test_an_unknown_agent_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown agent 'critic'"):
        AgentJob(task_id="t-1", step_id="t-1.1", agent="critic", text="review", deadline=1.0)


def test_what_is_computed_at_import_matches_the_registry() -> None:
    assert {r: s.weight for r, s in default_roles().items()} == registry.placement_roles()
    assert set(openai_schema.MODELS) == {openai_schema.AUTO_MODEL, *registry.agent_names()}
    for agent in registry.agents().values():
        assert openai_schema.MODELS[agent.name] == (agent.task_kind or "auto")
    # The two agents' own subscribers spell their subjects in shared/subjects.py.
    assert (registry.CODER.job_subject, registry.service("coder-agent").durable) == (subjects.JOB_CODER, subjects.CODER_DURABLE)
    assert (
        registry.REASONER.job_subject, registry.service("reasoner-agent").durable) == (subjects.JOB_REASONER, subjects.REASONER_DURABLE)
