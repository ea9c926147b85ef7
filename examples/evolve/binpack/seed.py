def pack(sizes, capacity):
    # Next fit: keep one open bin; when an item does not fit, close it and open a new one.
    bins = []
    current = []
    load = 0
    for i, size in enumerate(sizes):
        if load + size > capacity:
            bins.append(current)
            current = []
            load = 0
        current.append(i)
        load += size
    if current:
        bins.append(current)
    return bins
