"""Scores candidate.pack: 100 * lower bound / bins used, averaged over fixed instances.
An invalid packing raises (no score). Prints the per-instance numbers, then the score."""

import math
import random

from candidate import pack

CAPACITY = 100
rng = random.Random(20261)
instances = [[rng.randint(10, 60) for _ in range(120)] for _ in range(5)]

ratios = []
for k, sizes in enumerate(instances):
    bins = pack(list(sizes), CAPACITY)
    packed = sorted(x for b in bins for x in b)
    if packed != sorted(sizes):
        raise SystemExit(f"instance {k}: every item must be in exactly one bin")
    for b in bins:
        load = sum(b)
        if load > CAPACITY:
            raise SystemExit(f"instance {k}: a bin holds {load} > capacity {CAPACITY}")
    used = sum(1 for b in bins if b)
    bound = math.ceil(sum(sizes) / CAPACITY)
    ratios.append(100.0 * bound / used)
    print(f"instance {k}: {used} bins (lower bound {bound})")
print(round(sum(ratios) / len(ratios), 3))
