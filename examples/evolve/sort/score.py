"""Scores candidate.sort_list by comparisons on nearly sorted lists (deterministic, so the
score does not depend on how busy the machine is). Items are opaque: only `less` orders
them. A wrong order, lost items or any error: no score. Prints minus the mean count."""

import random

from candidate import sort_list


class Item:
    __slots__ = ("__weakref__",)


rng = random.Random(7)
N, LISTS, SWAPS = 300, 4, 6
counts = []
for k in range(LISTS):
    values = list(range(N))
    order = values[:]
    rng.shuffle(order)  # items are created in random order: their ids say nothing
    value_of = {}
    item_for = {}
    for v in order:
        it = Item()
        value_of[id(it)] = v
        item_for[v] = it
    xs = [item_for[v] for v in values]
    for _ in range(SWAPS):  # a few items out of place
        i, j = rng.randrange(N), rng.randrange(N)
        xs[i], xs[j] = xs[j], xs[i]
    calls = [0]

    def less(a, b, calls=calls, value_of=value_of):
        calls[0] += 1
        return value_of[id(a)] < value_of[id(b)]

    out = sort_list(list(xs), less)
    if not isinstance(out, list) or sorted(map(id, out)) != sorted(map(id, xs)):
        raise SystemExit(f"list {k}: the result must hold exactly the input items")
    got = [value_of[id(it)] for it in out]
    if got != values:
        raise SystemExit(f"list {k}: not in ascending order")
    counts.append(calls[0])
    print(f"list {k}: {calls[0]} comparisons")
print(-sum(counts) / len(counts))
