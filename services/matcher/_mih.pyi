# The compiled inner loop of the multi-index hash (_mih.c).
from collections.abc import Sequence

import numpy as np

def search(
    codes: np.ndarray,
    offsets: Sequence[np.ndarray],
    rows: Sequence[np.ndarray],
    width: int,
    masks: Sequence[np.ndarray],
    values: np.ndarray,
    queries: np.ndarray,
    radius: int,
) -> bytes: ...
