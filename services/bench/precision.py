"""What the accuracy benchmark's distractors say about false matches, per signal and per action.

A false match is an upload matched to an original it is not a copy of. Zero or a few observed
among N comparisons bound the true rate only so far: the one-sided 95% Clopper-Pearson upper
bound says how far, and scaled to a platform's daily uploads it says what the benchmark can
promise there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.95
DAILY_UPLOADS = 1_000_000


def upper_bound(failures: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided Clopper-Pearson upper bound on a rate seen ``failures`` times in ``trials``."""
    if trials <= 0 or failures >= trials:
        return 1.0
    low, high = failures / trials, 1.0
    for _ in range(200):  # bisection: the binomial CDF falls as the rate rises
        middle = (low + high) / 2
        if _binomial_cdf(failures, trials, middle) > 1 - confidence:
            low = middle
        else:
            high = middle
    return high


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (n is in the millions)."""
    if p <= 0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k + 1):
        log_choose = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        total += math.exp(log_choose + i * log_p + (n - i) * log_q)
    return total


@dataclass(frozen=True)
class FalseMatches:
    """False matches on the test distractors by one signal (or by all, ``signal`` "any")."""

    signal: str
    pairs: int  # (distractor, original) pairs matched
    uploads: int  # distractors matched to any original
    distractors: int
    originals: int

    @property
    def comparisons(self) -> int:
        """Distractor-original pairs compared."""
        return self.distractors * self.originals

    @property
    def pair_bound(self) -> float:
        """95% upper bound on the chance that one upload falsely matches one registered entry."""
        return upper_bound(self.pairs, self.comparisons)

    @property
    def upload_bound(self) -> float:
        """95% upper bound on the share of uploads falsely matched against these originals."""
        return upper_bound(self.uploads, self.distractors)

    def per_day(self, entries: int, uploads: int = DAILY_UPLOADS) -> float:
        """Bound on false matches a day at ``uploads`` a day against ``entries`` registered."""
        return uploads * min(1.0, entries * self.pair_bound)


def by_signal(
    found: dict[tuple[int, int], set[str]], test: list[int], originals: int
) -> list[FalseMatches]:
    """False matches of the ``test`` distractor rows, per signal and for any signal.

    ``found`` maps (upload row, original) to the signals that matched the pair.
    """
    rows = set(test)
    wrong = {pair: signals for pair, signals in found.items() if pair[0] in rows}
    names = sorted({s for signals in wrong.values() for s in signals} | {"pdq", "embedding"})
    out = []
    for name in [*names, "any"]:
        pairs = [p for p, signals in wrong.items() if name == "any" or name in signals]
        out.append(FalseMatches(name, len(pairs), len({p[0] for p in pairs}), len(rows), originals))
    return out
