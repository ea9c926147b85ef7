"""The program database of mode "islands": FunSearch's islands of behaviour clusters.

- **Islands** evolve apart: a prompt is built from one island's programs and its
  candidate joins that island. Islands take turns (sample n asks island n mod I), so each
  gets the same share of the samples.
- **Clusters** inside an island group programs by behaviour: the per-instance score
  signature the scorer prints (FunSearch's choice). Two programs that differ in code but
  pack every instance into the same number of bins are one behaviour; the cluster is the
  unit of selection, so a flood of near-copies of one behaviour cannot crowd out the
  others. (A MAP-Elites grid needs descriptors chosen per problem and many samples to
  fill its cells; a signature comes from the scorer for free and is meaningful from the
  first few programs, which matters at a few hundred samples.)
- **Choosing the versions of a prompt**: k distinct clusters drawn by a softmax over the
  island's cluster scores normalised to 0..1 (so the temperature means the same on any
  score scale), with FunSearch's schedule: the temperature falls from ``temperature`` to
  0 over ``temperature_period`` registrations, then starts again; inside a cluster,
  shorter programs are likelier. The versions go into the prompt in ascending score.
- **Migration**: ``reset`` (FunSearch) — every ``reset_every`` samples the weaker half of
  the islands (by best score) is emptied and restarted from the best program of a random
  stronger island; ``ring`` — every ``reset_every`` samples each island receives the best
  program of the previous one; ``none``.

The database holds references to program records; the engine persists each island as an
``EvolveIsland`` record after every change (so a resumed run rebuilds the same state).
"""

from __future__ import annotations

import math
import random

from shared.contracts import EvolveDatabase, EvolveIsland, EvolveProgram


def signature_key(p: EvolveProgram) -> str:
    """The behaviour cluster a scored program belongs to."""
    values = p.signature or ([p.score] if p.score is not None else [])
    return ",".join(f"{v:.6g}" for v in values)


def softmax_choice(weights: list[float], temperature: float, rng: random.Random) -> int:
    """Index drawn with probability softmax(weights / temperature) (argmax at temperature 0)."""
    if temperature <= 1e-9:
        top = max(weights)
        return rng.choice([i for i, w in enumerate(weights) if w == top])
    m = max(weights)
    probs = [math.exp((w - m) / temperature) for w in weights]
    return rng.choices(range(len(weights)), weights=probs)[0]


class IslandDatabase:
    """Islands of clusters over the run's program records (see the module doc)."""

    def __init__(self, config: EvolveDatabase, islands: list[EvolveIsland], programs: dict[str, EvolveProgram]) -> None:
        self.config = config
        self.islands = islands
        self.programs = programs  # every program of the run, by id (shared with the engine)

    @classmethod
    def empty(cls, run_id: str, config: EvolveDatabase, programs: dict[str, EvolveProgram]) -> IslandDatabase:
        return cls(config, [EvolveIsland(run_id=run_id, island=i) for i in range(config.islands)], programs)

    # --- registering ------------------------------------------------------------------
    def register(self, prog: EvolveProgram, island: int, asked: int) -> bool:
        """Put a scored program into ``island``; True when it became the island's best."""
        isl = self.islands[island]
        assert prog.score is not None
        key = signature_key(prog)
        members = isl.clusters.setdefault(key, [])
        if prog.program_id in members:
            return False
        members.append(prog.program_id)
        isl.cluster_scores[key] = prog.score
        isl.registered += 1
        if isl.best_score is None or prog.score > isl.best_score:
            isl.best_id, isl.best_score = prog.program_id, prog.score
            isl.best_validation = prog.validation
            isl.curve.append((asked, prog.score))
            return True
        return False

    def members(self, island: int) -> list[str]:
        return [pid for ids in self.islands[island].clusters.values() for pid in ids]

    def holds(self, program_id: str) -> bool:
        return any(program_id in ids for isl in self.islands for ids in isl.clusters.values())

    def stage_best(self, island: int, stage: str) -> float | None:
        """The best score any program of the island reached at a cascade stage."""
        scores = [p.stage_scores[stage] for pid in self.members(island)
                  if (p := self.programs.get(pid)) is not None and stage in p.stage_scores]
        return max(scores) if scores else None

    # --- prompts --------------------------------------------------------------------------
    def temperature(self, island: int) -> float:
        period = self.config.temperature_period
        return self.config.temperature * (1 - (self.islands[island].registered % period) / period)

    def choose_versions(self, island: int, rng: random.Random) -> list[EvolveProgram]:
        """Up to ``programs_per_prompt`` programs of distinct clusters, ascending score."""
        isl = self.islands[island]
        keys = [k for k, ids in isl.clusters.items() if ids]
        if not keys:
            return []
        scores = [isl.cluster_scores[k] for k in keys]
        lo, hi = min(scores), max(scores)
        norm = [(s - lo) / (hi - lo) if hi > lo else 0.0 for s in scores]
        chosen: list[str] = []
        temp = self.temperature(island)
        while keys and len(chosen) < self.config.programs_per_prompt:
            i = softmax_choice(norm, temp, rng)
            chosen.append(keys.pop(i))
            norm.pop(i)
        picked = [self._from_cluster(isl.clusters[k], rng) for k in chosen]
        return sorted(picked, key=lambda p: (p.score or -math.inf, -p.sample))

    def _from_cluster(self, ids: list[str], rng: random.Random) -> EvolveProgram:
        """A program of one cluster; shorter programs are likelier (FunSearch)."""
        progs = [self.programs[pid] for pid in ids if pid in self.programs]
        lengths = [len(p.function or p.code) for p in progs]
        lo, hi = min(lengths), max(lengths)
        return progs[softmax_choice([-(n - lo) / (hi + 1e-6) for n in lengths], 1.0, rng)]

    # --- migration ------------------------------------------------------------------------
    def migrate(self, asked: int, rng: random.Random) -> list[int]:
        """Run the migration due at ``asked`` samples; returns the islands that changed."""
        if len(self.islands) < 2 or self.config.migration == "none":
            return []
        if self.config.migration == "ring":
            bests = [isl.best_id for isl in self.islands]
            changed = []
            for i in range(len(self.islands)):
                donor = self.programs.get(bests[i - 1])
                if donor is not None and donor.program_id not in self.members(i):
                    self.register(donor, i, asked)
                    changed.append(i)
            return changed
        ranked = sorted(range(len(self.islands)), key=lambda i: (
            self.islands[i].best_score if self.islands[i].best_score is not None else -math.inf, -i))
        weak, strong = ranked[: len(ranked) // 2], ranked[len(ranked) // 2:]
        for i in weak:
            donor_island = self.islands[rng.choice(strong)]
            founder = self.programs[donor_island.best_id]
            old = self.islands[i]
            self.islands[i] = EvolveIsland(run_id=old.run_id, island=i, epoch=old.epoch + 1, founder=founder.program_id,
                                           samples=old.samples, valid=old.valid, curve=list(old.curve))
            self.register(founder, i, asked)
        return weak

    def best(self) -> EvolveProgram | None:
        """The best training score over all islands (ties: the earlier program)."""
        progs = [self.programs[isl.best_id] for isl in self.islands if isl.best_id in self.programs]
        return min(progs, key=lambda p: (-(p.score or -math.inf), p.sample), default=None)
