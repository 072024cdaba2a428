"""The matcher's copy of the registry, kept current by following the ``eraser.registry`` topic.

Every matcher replica replays the (compacted) registry topic — from its last snapshot's offsets
when it has one — then keeps reading it (``shared/follower.py``), so a registration or withdrawal
published anywhere reaches every replica within a poll. A record keyed by entry id replaces the
entry; a tombstone (null value) withdraws it. Only hashes and features (embeddings, keypoints) are
held; no image reaches the matcher.

State is a large immutable :class:`Generation` (memory-mapped arrays, multi-index-hash PDQ
search) plus a small mutable :class:`Delta` (a FAISS flat index and dictionaries) for changes since,
plus a bitmap of withdrawn generation entries. When the delta grows, compaction builds the next
generation in a background thread — searches and updates carry on meanwhile — writes it as the new
snapshot, and swaps it in.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.matcher import building, snapshots
from services.matcher.delta import Delta, codes_of, embeddings_of, faces_of
from services.matcher.generation import DIMENSIONS, FACE_DIMENSIONS, Entry, Generation, Member
from services.matcher.index import Similar, VectorIndex
from services.shared.keypoints import Keypoints, unpack
from services.shared.schemas import EntryRegistered, Signal

log = logging.getLogger(__name__)
_DELTA_KEYS = 1 << 40  # delta entry keys live above every generation key


class Registry:
    """Registered entries; safe to search from one thread while others update and compact."""

    def __init__(
        self,
        base: Generation | None = None,
        snapshot_dir: Path | None = None,
        delta_limit: int = 100_000,
        snapshot_interval_s: float = 600.0,
        on_failure: Callable[[BaseException], None] | None = None,
        snapshot_max_age_s: float = snapshots.MAX_AGE_S,
        delta_hashes: int | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._snapshot_max_age_s = snapshot_max_age_s
        self._pending_since: float | None = None  # the oldest change not yet in a snapshot
        self._marked_current = 0.0
        self._base = base if base is not None else building.empty()  # an empty one has offsets too
        self._dead = np.zeros(len(self._base), dtype=bool)
        self._dead_count = 0
        self._snapshot_interval_s = snapshot_interval_s
        self._last_compaction = time.monotonic()
        self._on_failure = on_failure
        self._delta = Delta()
        self._frozen: Delta | None = None  # being folded into the next generation
        self._withdrawn_since_freeze: list[str] | None = None
        self._snapshot_dir = snapshot_dir
        self._delta_limit = delta_limit
        # Also compact once the delta holds this many PDQ hashes (its index is a flat scan):
        # registered videos bring thousands each.
        self._delta_hashes = delta_hashes

    @property
    def offsets(self) -> dict[int, int]:
        """Registry-topic offsets the generation reflects (where a restart resumes)."""
        return self._base.offsets

    def counts(self) -> dict[Signal, int]:
        """About how many hashes of each signal are held (withdrawn generation hashes included)."""
        deltas = [d for d in (self._delta, self._frozen) if d is not None]
        return {
            "pdq": self._base.pdq_count + sum(len(d.pdq) for d in deltas),
            "sha256": self._base.digest_count("sha256")
            + sum(len(keys) for d in deltas for keys in d.exact["sha256"].values()),
            "md5": self._base.digest_count("md5")
            + sum(len(keys) for d in deltas for keys in d.exact["md5"].values()),
            "embedding": self._base.vectors.rows + sum(d.vectors.rows for d in deltas),
            "face": self._base.faces.rows + sum(d.faces.rows for d in deltas),
        }

    def register(self, registration: EntryRegistered) -> None:
        """Add an entry, replacing any earlier registration with the same id."""
        signals = registration.signals
        self.add(
            Member(
                Entry(registration.entry_id, registration.bank),
                codes_of(signals.pdq),
                signals.sha256,
                signals.md5,
                embeddings_of(signals.embedding),
                base64.b64decode(signals.keypoints) if signals.keypoints else b"",
                faces_of([signals.face] if signals.face else []),
                registration.subject,
            )
        )

    def add(self, member: Member) -> None:
        """Add an entry's signals, replacing any earlier entry with the same id."""
        with self._lock:
            self._withdraw_locked(member.entry.entry_id)
            self._delta.add(member)
            self._changed()

    def withdraw(self, entry_id: str) -> bool:
        """Remove an entry; False if it was not registered."""
        with self._lock:
            return self._withdraw_locked(entry_id)

    def exact(self, signal: Signal, digest: str) -> list[Entry]:
        """Entries registered with this exact SHA-256 or MD5."""
        with self._lock:
            base, dead = self._base, self._dead
            found = [base.entry(k) for k in base.with_digest(signal, digest) if not dead[k]]
            for delta in (self._frozen, self._delta):
                if delta is not None:
                    found += [delta.by_key[k] for k in delta.exact[signal].get(digest, ())]
        return found

    def near(self, hashes: list[list[str]], max_distance: int) -> list[dict[Entry, int]]:
        """For each upload's PDQ hashes (its rotations/flips), entries within ``max_distance``.

        Searched as one batch; each entry is reported once per upload with its smallest distance.
        """
        queries = codes_of([code for codes in hashes for code in codes])
        owner = [upload for upload, codes in enumerate(hashes) for _ in codes]
        found: list[dict[Entry, int]] = [{} for _ in hashes]
        with self._lock:
            base, dead, deltas = self._base, self._dead, [self._frozen, self._delta]
        query, rows, distance = base.pdq.search(queries, max_distance)
        keys = base.pdq_owner(rows)
        hits = [
            (int(q), base.entry(int(k)), int(d))
            for q, k, d in zip(query, keys, distance, strict=True)
            if not dead[k]
        ]
        with self._lock:
            for delta in deltas:
                if delta is not None:
                    matches = delta.pdq.search(queries.view(np.uint8).reshape(-1, 32), max_distance)
                    hits += [
                        (m.query, delta.by_key[m.key], m.distance)
                        for m in matches
                        if m.key in delta.by_key
                    ]
        for q, entry, d in hits:
            best = found[owner[q]]
            best[entry] = min(d, best.get(entry, d))
        return found

    def similar(self, vectors: list[np.ndarray], min_cosine: float) -> list[dict[Entry, float]]:
        """For each upload's embeddings, entries with a cosine >= ``min_cosine`` (the best)."""
        found = self._vector_hits(
            vectors, DIMENSIONS, lambda generation: generation.vectors, min_cosine
        )
        return [_best(hits) for hits in found]

    def faces(
        self, faces: list[np.ndarray], min_cosine: float
    ) -> list[list[tuple[int, Entry, float]]]:
        """For each upload's faces, every face entry at ``min_cosine`` or more.

        As (the upload's face number, entry, cosine).
        """
        return self._vector_hits(faces, FACE_DIMENSIONS, lambda part: part.faces, min_cosine)

    def subject_of(self, entry: Entry) -> str | None:
        """The subject ``entry`` is of, if it names one."""
        with self._lock:
            for delta in (self._delta, self._frozen):
                if delta is not None and entry.entry_id in delta.members:
                    return delta.members[entry.entry_id][1].subject
            base, dead = self._base, self._dead
        key = base.key_of(entry.entry_id)
        return None if key is None or dead[key] else base.subject_of(key)

    def nearest(self, vectors: list[np.ndarray], count: int) -> list[list[tuple[Entry, float]]]:
        """For each upload's embeddings, the ``count`` nearest entries, nearest first."""
        if count <= 0:
            return [[] for _ in vectors]
        # An entry may hold several vectors (older registrations carry crops and rotations): ask
        # for enough rows that ``count`` distinct entries remain.
        found = self._vector_hits(
            vectors, DIMENSIONS, lambda generation: generation.vectors, nearest=16 * count
        )
        return [sorted(_best(hits).items(), key=lambda item: -item[1])[:count] for hits in found]

    def _vector_hits(
        self,
        vectors: list[np.ndarray],
        dimensions: int,
        index_of: Callable[[Generation | Delta], VectorIndex],
        min_cosine: float = -1.0,
        nearest: int = 0,
    ) -> list[list[tuple[int, Entry, float]]]:
        """For each upload's vectors, the live rows found, as (vector number, entry, cosine).

        The rows at ``min_cosine`` or more, or with ``nearest``, that many nearest to each vector.
        """
        owner = [(upload, n) for upload, rows in enumerate(vectors) for n in range(len(rows))]
        queries = np.concatenate([np.empty((0, dimensions), np.float32), *vectors])

        def search(index: VectorIndex) -> list[Similar]:
            if nearest:
                return index.nearest(queries, nearest)
            return index.search(queries, min_cosine)

        found: list[list[tuple[int, Entry, float]]] = [[] for _ in vectors]
        with self._lock:
            base, dead, deltas = self._base, self._dead, [self._frozen, self._delta]
        hits = [(s, base.entry(s.key)) for s in search(index_of(base)) if not dead[s.key]]
        with self._lock:
            for delta in deltas:
                if delta is not None:
                    hits += [
                        (s, delta.by_key[s.key])
                        for s in search(index_of(delta))
                        if s.key in delta.by_key
                    ]
        for similar, entry in hits:
            upload, number = owner[similar.query]
            found[upload].append((number, entry, similar.cosine))
        return found

    def keypoints_of(self, entry: Entry) -> Keypoints | None:
        """The keypoints registered for ``entry`` (None if it has none)."""
        with self._lock:
            for delta in (self._delta, self._frozen):
                if delta is not None and entry.entry_id in delta.members:
                    packed = delta.members[entry.entry_id][1].keypoints
                    return unpack(packed) if packed else None
            base, dead = self._base, self._dead
        key = base.key_of(entry.entry_id)
        if key is None or dead[key]:
            return None
        packed = base.keypoints_of(key)
        return unpack(packed) if packed else None

    def pdq_distance(self, entry: Entry, hashes: list[str]) -> int:
        """The smallest distance between ``hashes`` and the PDQ hashes registered for ``entry``."""
        with self._lock:
            registered = self._registered_codes(entry.entry_id)
        if len(registered) == 0 or not hashes:
            return 256
        queries = codes_of(hashes)
        return int(np.bitwise_count(queries[:, None, :] ^ registered[None, :, :]).sum(-1).min())

    def _registered_codes(self, entry_id: str) -> np.ndarray:
        for delta in (self._delta, self._frozen):
            if delta is not None and entry_id in delta.members:
                return delta.members[entry_id][1].codes
        key = self._base.key_of(entry_id)
        if key is None or self._dead[key]:
            return np.empty((0, 4), dtype=np.uint64)
        return self._base.codes_of(key)

    def needs_compaction(self) -> bool:
        """Whether to compact now.

        When the delta or the withdrawn share of the generation has grown enough, or, with
        snapshots on, when changes have waited longer than the snapshot interval (so a restart's
        tail stays short) and are worth rewriting the generation for: at least one per thousand
        entries, so a trickle of registrations does not rebuild ten million entries every time.
        """
        if self._frozen is not None:
            return False
        changed = len(self._delta.members) + self._dead_count
        now = time.monotonic()
        overdue = now - self._last_compaction > self._snapshot_interval_s
        # However few, changes must reach a snapshot well before it is too old to start from.
        aging = self._pending_since is not None and (
            now - self._pending_since > self._snapshot_max_age_s / 2
        )
        return (
            len(self._delta.members) > max(self._delta_limit, len(self._base) // 8)
            or (self._delta_hashes is not None and len(self._delta.pdq) > self._delta_hashes)
            or self._dead_count > max(1000, len(self._base) // 10)
            or (
                self._snapshot_dir is not None
                and ((overdue and changed >= max(1, len(self._base) // 1000)) or aging)
            )
        )

    def compact(self, offsets: dict[int, int], background: bool = True) -> threading.Thread | None:
        """Fold the delta into a new generation; ``offsets`` must be where the state stands now."""
        with self._lock:
            if self._frozen is not None:
                return None
            self._frozen, self._delta = self._delta, Delta(next_key=self._delta.next_key)
            self._withdrawn_since_freeze = []
            self._pending_since = None
            # Listed under the lock: withdrawals keep removing members from the frozen delta
            # while the new generation is built (and are carried over when it is swapped in).
            added = [member for _, member in self._frozen.members.values()]
            base, dead = self._base, self._dead.copy()
        worker = threading.Thread(
            target=self._build,
            args=(base, dead, added, dict(offsets)),
            name="compaction",
            daemon=True,
        )
        if not background:
            worker.run()
            return None
        worker.start()
        return worker

    def _build(
        self, base: Generation, dead: np.ndarray, added: list[Member], offsets: dict[int, int]
    ) -> None:
        started = time.monotonic()
        folder = snapshots.next_folder(self._snapshot_dir)
        try:
            fresh = building.compacted(base, dead, added, offsets, folder if folder else Path())
        except Exception as error:  # a full disk, say: stop, and restart from the last snapshot
            log.exception("compaction failed")
            if self._on_failure is None:
                raise
            self._on_failure(error)
            return
        with self._lock:
            fresh_dead = np.zeros(len(fresh), dtype=bool)
            for entry_id in self._withdrawn_since_freeze or []:
                key = fresh.key_of(entry_id)
                if key is not None:
                    fresh_dead[key] = True
            self._base, self._dead = fresh, fresh_dead
            self._dead_count = int(fresh_dead.sum())
            self._frozen, self._withdrawn_since_freeze = None, None
            self._last_compaction = time.monotonic()
        snapshots.prune(self._snapshot_dir, keep=fresh.folder)
        log.info(
            "compacted the registry",
            extra={
                "fields": {
                    "entries": len(fresh),
                    "pdq": fresh.pdq_count,
                    "seconds": round(time.monotonic() - started, 2),
                    "snapshot": str(fresh.folder or ""),
                }
            },
        )

    def _withdraw_locked(self, entry_id: str) -> bool:
        found = False
        key = self._base.key_of(entry_id)
        if key is not None and not self._dead[key]:
            self._dead[key] = found = True
            self._dead_count += 1
        for delta in (self._frozen, self._delta):
            if delta is not None:
                found = delta.remove(entry_id) or found
        if self._withdrawn_since_freeze is not None:
            self._withdrawn_since_freeze.append(entry_id)
        if found:
            self._changed()
        return found

    def _changed(self) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()

    def mark_current(self) -> None:
        """Call when caught up with the registry topic: an unchanged snapshot is still current.

        Written now and then (an eighth of the maximum age), so a matcher restarted after a quiet
        spell can still trust its snapshot.
        """
        with self._lock:
            idle = self._pending_since is None and self._frozen is None
            due = time.monotonic() - self._marked_current > self._snapshot_max_age_s / 8
            base = self._base
        if idle and due and base.folder is not None:
            snapshots.mark_current(base)
            self._marked_current = time.monotonic()


def _best(hits: list[tuple[int, Entry, float]]) -> dict[Entry, float]:
    """The best cosine of each entry among ``hits``."""
    best: dict[Entry, float] = {}
    for _, entry, cosine in hits:
        best[entry] = max(cosine, best.get(entry, cosine))
    return best
