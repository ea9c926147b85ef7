def pack(sizes, capacity):
    # Next fit: keep one open bin; when an item does not fit, close it and open a new one.
    bins = []
    current = []
    load = 0
    for size in sizes:
        if load + size > capacity:
            bins.append(current)
            current = []
            load = 0
        current.append(size)
        load += size
    if current:
        bins.append(current)
    return bins
