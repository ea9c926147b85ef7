def sort_list(xs, less):
    # Bubble sort: always compares every neighbouring pair in every pass.
    items = list(xs)
    n = len(items)
    for i in range(n):
        for j in range(n - 1 - i):
            if less(items[j + 1], items[j]):
                items[j], items[j + 1] = items[j + 1], items[j]
    return items
