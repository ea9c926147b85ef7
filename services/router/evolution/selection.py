"""Selection with diversity.

Survivors (``select_survivors``), from the current population plus the generation's
scored children:

1. only programs with a score take part;
2. duplicates by normalised code hash are dropped (the oldest copy stays, so lineage
   points at the first program that had that code);
3. order by score, higher first; ties go to the older program (lower generation), so an
   elite is only displaced by a strictly better program;
4. the best program always survives (elitism);
5. the remaining places are filled in that order, but at most ``ceil(P/2)`` survivors may
   share one score value (rounded to 6 significant digits): a plateau of near-clones
   cannot take the whole population while programs with other scores are left;
6. places still free after that are filled from the skipped programs, in order.

Parents (``pick_parents``): each child gets a binary tournament winner from the
population as its parent (two distinct programs drawn at random, the higher score wins)
and, when the population has another program, the best program other than the parent as
an "inspiration" shown alongside it.
"""

from __future__ import annotations

import ast
import hashlib
import io
import math
import random
import tokenize

from shared.contracts import EvolveProgram


def normalized_hash(code: str) -> str:
    """Hash of the code's syntax tree without docstrings, comments and layout (16 hex).

    Code that does not parse is hashed by its tokens without comments and whitespace.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return hashlib.sha256(_token_text(code).encode()).hexdigest()[:16]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:16]


def _token_text(code: str) -> str:
    try:
        toks = tokenize.generate_tokens(io.StringIO(code).readline)
        return " ".join(t.string for t in toks if t.type not in (
            tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return " ".join(code.split())


def score_niche(score: float) -> str:
    return f"{score:.6g}"


def rank_key(p: EvolveProgram) -> tuple[float, int, str]:
    assert p.score is not None
    return (-p.score, p.generation, p.program_id)


def select_survivors(pool: list[EvolveProgram], size: int) -> list[EvolveProgram]:
    """The programs that survive into the next generation, best first (see module doc)."""
    scored = sorted((p for p in pool if p.score is not None and math.isfinite(p.score)),
                    key=lambda p: (p.generation, p.program_id))
    unique: dict[str, EvolveProgram] = {}
    for p in scored:  # oldest first: the first program with a given code keeps its place
        unique.setdefault(p.code_hash or normalized_hash(p.code), p)
    ranked = sorted(unique.values(), key=rank_key)
    if not ranked:
        return []
    cap = max(1, math.ceil(size / 2))
    chosen: list[EvolveProgram] = [ranked[0]]
    niches = {score_niche(ranked[0].score or 0.0): 1}
    skipped: list[EvolveProgram] = []
    for p in ranked[1:]:
        if len(chosen) >= size:
            break
        niche = score_niche(p.score or 0.0)
        if niches.get(niche, 0) >= cap:
            skipped.append(p)
            continue
        niches[niche] = niches.get(niche, 0) + 1
        chosen.append(p)
    for p in skipped:
        if len(chosen) >= size:
            break
        chosen.append(p)
    return sorted(chosen, key=rank_key)


def tournament(population: list[EvolveProgram], rng: random.Random) -> EvolveProgram:
    """Binary tournament: the higher score of two distinct random programs (ties: random)."""
    if len(population) == 1:
        return population[0]
    a, b = rng.sample(population, 2)
    sa = a.score if a.score is not None else -math.inf
    sb = b.score if b.score is not None else -math.inf
    if sa == sb:
        return a if rng.random() < 0.5 else b
    return a if sa > sb else b


def pick_parents(population: list[EvolveProgram], rng: random.Random) -> tuple[EvolveProgram, EvolveProgram | None]:
    """(parent, inspiration) for one child; inspiration is None in a population of one."""
    parent = tournament(population, rng)
    others = sorted((p for p in population if p.program_id != parent.program_id), key=rank_key)
    return parent, (others[0] if others else None)
