"""Draft-model speculative decoding on tiny real models: a second GGUF of the same
vocabulary drafts, the target verifies; output equals plain decoding (greedy, and sampled
with a seed on these F16 models), and the roster wires it per role."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError, ModelUnavailable
from shared.llm.base import GenerationRequest
from shared.llm.tiny import TinySpec, write_tiny_model

MSG = [{"role": "user", "content": "Tell me something."}]


def req(**kw) -> GenerationRequest:  # type: ignore[no-untyped-def]
    return GenerationRequest(messages=kw.pop("messages", MSG), **kw)


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same vocabulary, other weights: a draft that is often wrong."""
    return write_tiny_model(tmp_path_factory.mktemp("draft") / "other.gguf", TinySpec(seed=7))


async def test_same_model_as_draft_is_accepted_and_output_unchanged(make_engine, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    # margin 0: random weights give near-ties, which would send most choices to a resync
    eng = make_engine(speculative="draft", draft_model_path=tiny_model, draft_tokens=4, spec_adaptive=False,
                      spec_exact_margin=0.0, draft_p_min=0.0)
    eng._reset_cache()
    plain = await eng.generate(req(max_tokens=200, speculative=False))
    eng._reset_cache()
    spec = await eng.generate(req(max_tokens=200))
    assert spec.text == plain.text and spec.output_tokens == plain.output_tokens
    s = eng.stats()
    assert s["spec_model_drafted"] > 0  # the draft model wrote drafts
    assert s["spec_model_accepted"] / s["spec_model_drafted"] > 0.9  # its own greedy choices
    assert s["draft_model"] == str(tiny_model)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
async def test_a_wrong_draft_never_changes_the_output(make_engine, tiny_model: Path, other_tiny: Path,
                                                       temperature: float) -> None:
    eng = make_engine(speculative="draft", draft_model_path=other_tiny, draft_tokens=3, spec_adaptive=False,
                      draft_p_min=0.0)
    r = req(max_tokens=150, temperature=temperature, seed=11)
    plain = await eng.generate(r.model_copy(update={"speculative": False}))
    eng._reset_cache()
    spec = await eng.generate(r)
    assert spec.text == plain.text  # each token still comes from the target's own sampler
    assert eng.stats()["spec_model_drafted"] > 0


async def test_batched_sequences_do_not_draft(make_engine, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    eng = make_engine(slots=2, speculative="draft", draft_model_path=tiny_model, spec_adaptive=False)
    a, b = req(max_tokens=40), req(max_tokens=40, messages=[{"role": "user", "content": "Other."}])
    plain = [(await eng.generate(x.model_copy(update={"speculative": False}))).text for x in (a, b)]
    eng._reset_cache()
    together = await asyncio.gather(eng.generate(a), eng.generate(b))
    assert [r.text for r in together] == plain


def test_missing_draft_file_is_model_unavailable(make_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelUnavailable, match="draft"):
        make_engine(speculative="draft", draft_model_path=tmp_path / "nope.gguf")


def test_roster_wires_the_draft_model_per_role(tmp_path: Path, tiny_model: Path) -> None:
    from shared.llm.llama import EngineConfig
    from shared.llm.roster import load_roster

    roster = tmp_path / "models.toml"
    roster.write_text(f'''
[models.big]
file = "big.gguf"
path = "{tiny_model}"
[models.small]
file = "small.gguf"
path = "{tiny_model}"
[roles.coder]
model = "big"
speculative = "draft"
draft_model = "small"
draft_tokens = 6
[roles.plain]
model = "big"
speculative = "draft"
''')
    role = load_roster(roster).role("coder")
    assert role.draft is not None and role.draft.path == tiny_model
    cfg = EngineConfig.from_role(role)
    assert (cfg.speculative, cfg.draft_model_path, cfg.draft_tokens) == ("draft", tiny_model, 6)
    other = tmp_path / "other.gguf"
    env = {"SYNDICATE_MODEL_CODER_DRAFT_PATH": str(other)}
    assert load_roster(roster).role("coder", env=env).draft.path == other  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="draft_model"):
        load_roster(roster).role("plain")


def test_draft_policy_drafts_only_when_it_pays() -> None:
    from shared.llm.speculation import DraftPolicy

    # Compute-bound host: a batch of n costs n singles, a draft token 1/3 of one: even a
    # draft accepted whole never pays, so nothing is drafted and nothing probed.
    cost = {n: 0.03 * n for n in range(1, 8)}
    p = DraftPolicy(cost, {"token": 0.01}, probe_every=4)
    p.start_request(4)
    assert [p.length() for _ in range(8)] == [0] * 8
    # Batches cheaper than their rows: whole acceptance would pay, this acceptance does
    # not: only the probes draft (to find out whether the acceptance got better).
    cost.update({n: 0.03 * (1 + 0.3 * (n - 1)) for n in range(1, 8)})
    p.acceptance = 0.1
    lengths = [p.length() for _ in range(8)]
    assert lengths.count(0) == 6 and lengths.count(1) == 2
    # Memory-bound host: a batch of 5 costs ~1.2 singles, a draft token 1/4: drafts pay.
    cost.update({n: 0.03 * (1 + 0.05 * (n - 1)) for n in range(1, 8)})
    p.draft_cost["token"] = 0.0075
    p.acceptance = 0.7
    assert p.length() == 2  # (1 + .7 + .49) / (2 * .0075 + .0315) beats d = 1 and d = 3
    p.acceptance = 0.05  # a draft that is always wrong stops being made
    assert p.length() == 0
    p.record(3, 0.04, drafted=2, accepted=2)
    assert p.acceptance > 0.05 and cost[3] != 0.03 * 1.1


def test_unmeasured_batch_sizes_are_interpolated() -> None:
    from shared.llm.speculation import batch_cost

    assert batch_cost({1: 1.0}, 4) is None  # nothing above one row measured: try once
    cost = {1: 1.0, 3: 2.0, 7: 4.0}
    assert batch_cost(cost, 3) == 2.0 and batch_cost(cost, 5) == 3.0
    assert batch_cost(cost, 14) == 8.0  # linear in rows past the largest
    assert batch_cost({1: 1.0, 9: 5.0}, 4) == 5.0  # only larger: its cost bounds it


def test_draft_policies_wait_for_a_measured_plain_step() -> None:
    from shared.llm.speculation import DraftPolicy, LookupPolicy

    cost: dict[int, float] = {}
    assert DraftPolicy(cost, {"token": 0.01}).length() == 0
    assert not LookupPolicy(cost=cost).want(4)
    cost[1] = 0.03
    assert LookupPolicy(cost=cost).want(4)  # no batch size measured yet: try one


def test_lookup_probes_back_off_and_first_drafts_are_short() -> None:
    from shared.llm.speculation import LookupPolicy

    cost = {1: 0.03, 11: 0.03 * 5}  # an 11-row batch costs 5 singles
    p = LookupPolicy(cost=cost, probe_every=4)
    p.start_request(10, 32)
    assert p.k == 3  # a request's first draft is short
    p.record(4, 0.06, drafted=3, accepted=0)
    assert p.k == 3  # nothing copied yet: stay short
    p.acceptance = 0.1
    tried = [p.want(10) for _ in range(4 + 8 + 16)]
    assert [i for i, t in enumerate(tried) if t] == [3, 11, 27]  # probes after 4, 8, 16 refusals
    assert not LookupPolicy(cost={1: 0.03, 11: 0.4}).want(10)  # even whole acceptance cannot pay
    p.record(11, 0.15, drafted=10, accepted=4)
    assert p.k == 10  # once something was copied a miss falls back to the base length
