from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class ReasonerSettings(Settings):
    max_tokens: int = 512
    top_k: int = 5
    # Hits scoring below this (cosine to the question) are "nothing relevant", never cited.
    # Low on purpose: names the embedder does not know ("TerraUSD") score ~0.24 on the very
    # passage that answers; an answer no passage supports is refused after grounding anyway.
    min_score: float = 0.2
    # Passages put before the model (best first): the top two hold the answer to every
    # labelled DeFi question, but code chunks (one per function) cluster closely and the
    # right one is third in 3 of 20 code questions (bench/data/code_questions.json).
    max_sources: int = Field(default=3, ge=1, le=20)
    # A passage at least this close to the question (cosine) holds something relevant: when
    # the model refuses over it, or answers nothing it supports, it is asked once more.
    # Off-corpus questions reached 0.38 over code, 0.25 over prose; answerable ones 0.36-0.75.
    sure_score: float = Field(default=0.45, ge=0, le=1.01)
    search_timeout_s: float = 20.0
    # Self-consistency for questions with a checkable answer (a number, an option letter):
    # this many chains (the first greedy, the rest sampled at vote_temperature with seeds
    # vote_seed + i) generated in parallel engine slots, then a majority vote. 1 turns it
    # off. bench/reasoner_quality.py measures the default against one chain.
    vote_chains: int = Field(default=5, ge=1, le=16)
    vote_temperature: float = Field(default=0.7, gt=0, le=2)
    vote_seed: int = 1234
    vote_early_stop: bool = True  # cancel chains that can no longer change the winner
    # A model-written citation stays when its passage holds this share of the sentence's
    # content words; an uncited sentence is attributed at the higher share.
    cite_support: float = Field(default=0.25, ge=0, le=1)
    cite_attribute: float = Field(default=0.35, ge=0, le=1)
