"""Whether keypoints get their chance: how often an edited copy's original is on the shortlist.

The matcher checks keypoints only for the entries nearest an upload by embedding (``Shortlist``:
the 8 nearest, at cosine 0.5 or more), so a copy that PDQ and the embedding both miss is found
by keypoints only if its original is still among those 8. With the benchmark's 80 originals it
nearly always is; a real registry holds many more entries. Registering the distractors' whole-
image embeddings beside the originals shows how the shortlist holds with 10k entries.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from services.bench.corpus import Corpus
from services.matcher.delta import embeddings_of
from services.matcher.handler import Shortlist


def reach(corpus: Corpus) -> dict[str, tuple[float, float]]:
    """Per edit class, the share of copies whose original is shortlisted.

    Two shares: among the originals alone, and among the originals and every distractor photo's
    embedding registered as an entry.
    """
    shortlist = Shortlist()
    originals = np.concatenate(
        [embeddings_of(r.signals.embedding)[:1] for r in corpus.registrations]
    )
    extra = np.stack(
        [u.embeddings[0] for u in corpus.uploads if u.original < 0 and u.embeddings is not None]
    )
    alone: dict[str, list[bool]] = defaultdict(list)
    crowded: dict[str, list[bool]] = defaultdict(list)
    for upload in corpus.uploads:
        if upload.original < 0 or upload.embeddings is None:
            continue
        near = (upload.embeddings @ originals.T).max(axis=0)
        true = near[upload.original]
        ahead = int((near > true).sum())
        beyond = int(((upload.embeddings @ extra.T).max(axis=0) > true).sum())
        near_enough = bool(true >= shortlist.min_cosine)
        alone[upload.edit_class].append(near_enough and ahead < shortlist.entries)
        crowded[upload.edit_class].append(near_enough and ahead + beyond < shortlist.entries)
    return {k: (float(np.mean(alone[k])), float(np.mean(crowded[k]))) for k in sorted(alone)}
