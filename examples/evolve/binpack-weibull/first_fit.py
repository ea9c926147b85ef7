import numpy as np


def priority(item: float, bins: np.ndarray) -> np.ndarray:
    """First fit: the first bin the item fits (bins are in the order they were opened)."""
    return -np.arange(len(bins), dtype=float)
