"""Online bin packing exactly as FunSearch (Nature 2023) scores it: ``candidate.priority``
rates the bins an item fits, the item goes to the argmax, items arrive in order.

    bins     every instance starts with one bin per item, all at the full capacity, as
             FunSearch's evaluator does; ``priority(item, bins)`` sees the remaining
             capacities of the bins the item fits (empty bins included)
    score    minus the mean number of bins used (higher is better)

The run's stage comes on stdin as JSON (``{"stage": ..., "params": {...}}``, see
docs/evolve.md); an empty stdin means "train". Stages and their seeded instances:

    quick       the first training instance (the cascade's cheap filter)
    train       the training instances (the score that evolution climbs)
    validation  other seeds: picks the final program among the best training programs
    test        held out: reported at the end, never used for a choice

``params.distribution``: "weibull" (FunSearch's Weibull 5k: sizes Weibull(shape 3,
scale 45) rounded and clipped to 1..100, capacity 100, 5 instances of 5,000 items) or
"or" (OR-Library style: capacity 150, sizes uniform in 20..100; training and validation
5 instances of 500 items, test 20 instances each of 120, 250, 500 and 1,000 items as
OR1..OR4). The last line is one JSON object: score, the per-instance signature (bins
used), a fingerprint of the placements and the excess over the L1 bound in percent.
"""

import hashlib
import json
import math
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one box, one core
import numpy as np  # noqa: E402
from candidate import priority  # noqa: E402

SPLITS = {  # distribution -> stage -> (list of (seed, items)), capacity
    "weibull": {
        "capacity": 100,
        "train": [(1 + k, 5000) for k in range(5)],
        "validation": [(101 + k, 5000) for k in range(5)],
        "test": [(1001 + k, 5000) for k in range(5)],
    },
    "or": {
        "capacity": 150,
        "train": [(1 + k, 500) for k in range(5)],
        "validation": [(101 + k, 500) for k in range(5)],
        "test": [(1000 * n + k, n) for n in (120, 250, 500, 1000) for k in range(20)],
    },
}


def sizes(distribution, seed, n):
    rng = np.random.default_rng([seed, 0 if distribution == "weibull" else 1])
    if distribution == "weibull":
        return np.clip(np.round(rng.weibull(3.0, n) * 45.0), 1, 100).astype(int).tolist()
    return rng.integers(20, 101, size=n).tolist()


def pack(items, capacity, trail):
    """Bins used by the candidate on one instance; each choice goes into ``trail``."""
    bins = np.full(len(items), float(capacity))
    for item in items:
        valid = np.nonzero(bins - item >= 0)[0]
        given = bins[valid]  # a copy: the candidate cannot change the real bins
        prio = np.asarray(priority(float(item), given), dtype=float)
        if prio.shape != given.shape:
            raise SystemExit(f"priority(item, bins) must return one number per bin: got shape {prio.shape} "
                             f"for {given.shape[0]} bins")
        if np.isnan(prio).any():
            raise SystemExit(f"priority(item={item}, ...) returned NaN for some bins")
        chosen = int(valid[int(np.argmax(prio))])
        bins[chosen] -= item
        trail.append(chosen)
    return int((bins != capacity).sum())


def main():
    raw = sys.stdin.read().strip()
    request = json.loads(raw) if raw else {}
    stage = request.get("stage", "train")
    distribution = request.get("params", {}).get("distribution", "weibull")
    split = SPLITS[distribution]
    capacity = split["capacity"]
    instances = split["train"][:1] if stage == "quick" else split[stage]
    used, bounds, trail = [], [], []
    for seed, n in instances:
        items = sizes(distribution, seed, n)
        used.append(pack(items, capacity, trail))
        bounds.append(math.ceil(sum(items) / capacity))
        print(f"{stage} instance {len(used) - 1} ({n} items): {used[-1]} bins, L1 bound {bounds[-1]}")
    excess = 100.0 * (sum(used) - sum(bounds)) / sum(bounds)
    metrics = {"excess_pct": round(excess, 4), "bins": sum(used), "l1_bound": sum(bounds)}
    if distribution == "or" and stage == "test":
        for k in range(4):  # OR1..OR4: 20 instances each
            u, b = sum(used[20 * k:20 * k + 20]), sum(bounds[20 * k:20 * k + 20])
            metrics[f"OR{k + 1}_excess_pct"] = round(100.0 * (u - b) / b, 4)
    print(json.dumps({
        "score": -sum(used) / len(used), "signature": used, "metrics": metrics,
        "fingerprint": hashlib.sha256(np.asarray(trail, dtype=np.int32).tobytes()).hexdigest()[:16],
    }))


main()
