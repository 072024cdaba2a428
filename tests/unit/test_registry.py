import time
from pathlib import Path

import numpy as np
import pytest

from services.matcher import mih
from services.matcher.delta import codes_of
from services.matcher.generation import Entry
from services.matcher.mih import MultiIndexHash
from services.matcher.registry import Registry
from services.matcher.snapshots import load_latest
from services.shared.keypoints import Keypoints, keypoints_to_text
from services.shared.schemas import EntryRegistered, Signals, embedding_to_text


def random_hex(rng, n):
    return [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(n)]


def flipped(code, bits, rng):
    value = int(code, 16)
    for bit in rng.choice(256, bits, replace=False):
        value ^= 1 << int(bit)
    return f"{value:064x}"


def registration(entry_id, pdq=(), sha256=None, md5=None, bank="kids"):
    return EntryRegistered(
        entry_id=entry_id, bank=bank, signals=Signals(pdq=list(pdq), sha256=sha256, md5=md5)
    )


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.mark.parametrize("flat_below", [1 << 30, 16], ids=["flat-scan", "multi-index-hash"])
def test_pdq_search_is_exact_at_every_radius(rng, monkeypatch, flat_below):
    monkeypatch.setattr(mih, "FLAT_BELOW", flat_below)
    codes = codes_of(random_hex(rng, 3000))
    index = MultiIndexHash.build(codes)
    queries = codes.copy()[:40]
    hexes = [flipped(q.tobytes().hex(), int(rng.integers(0, 36)), rng) for q in queries]
    queries = codes_of(hexes)
    brute = np.bitwise_count(codes[None] ^ queries[:, None]).sum(-1)
    for radius in (0, 8, 31, 35):
        query, row, distance = index.search(queries, radius)
        expected = {
            (q, r, int(brute[q, r])) for q, r in zip(*np.nonzero(brute <= radius), strict=True)
        }
        assert set(zip(query.tolist(), row.tolist(), distance.tolist(), strict=True)) == expected


def test_row_numbers_four_bytes_wide_find_the_same(rng, monkeypatch):
    # Past 16.7 million codes a row number takes 4 bytes; a few thousand, repacked, stand in.
    monkeypatch.setattr(mih, "FLAT_BELOW", 16)
    codes = rng.integers(0, 2**63, (3000, 4), dtype=np.uint64)
    narrow = MultiIndexHash.build(codes)
    widened = [
        mih._packed(np.pad(rows, ((0, 0), (0, 1))).view("<u4").ravel(), 1 << 24)
        for rows in narrow.rows
    ]
    assert widened[0].shape[1] == 4
    wide = MultiIndexHash(codes, narrow.offsets, widened)
    queries = codes[:50].copy()  # the first 25 exact, the others 1 bit off in each word
    queries[25:] ^= np.uint64(1) << rng.integers(0, 64, (25, 4), dtype=np.uint64)
    for radius in (0, 12, 31):
        expected = [part.tolist() for part in narrow.search(queries, radius)]
        assert [part.tolist() for part in wide.search(queries, radius)] == expected
        assert len(expected[0]) >= 1


def test_no_queries_find_nothing(monkeypatch, rng):
    monkeypatch.setattr(mih, "FLAT_BELOW", 16)
    index = MultiIndexHash.build(rng.integers(0, 2**63, (100, 4), dtype=np.uint64))
    assert all(len(part) == 0 for part in index.search(np.empty((0, 4), np.uint64), 31))


@pytest.mark.parametrize("radius", [0, 5, 12, 13, 24, 31, 35])
def test_differences_spread_as_evenly_as_possible_over_the_chunks_are_found(
    rng, monkeypatch, radius
):
    # The hardest case for the probing scheme: no chunk differs by much less than the others.
    monkeypatch.setattr(mih, "FLAT_BELOW", 16)
    codes = rng.integers(0, 2**63, (2000, 4), dtype=np.uint64)
    index = MultiIndexHash.build(codes)
    queries = codes[:60].copy()
    for query in queries:
        counts = np.full(mih.CHUNKS, radius // mih.CHUNKS)
        counts[rng.choice(mih.CHUNKS, radius % mih.CHUNKS, replace=False)] += 1
        for chunk, count in enumerate(counts):
            for bit in chunk * mih.CHUNK_BITS + rng.choice(mih.CHUNK_BITS, count, replace=False):
                query[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    query, row, distance = index.search(queries, radius)
    found = {(int(q), int(r)) for q, r in zip(query, row, strict=True)}
    assert {(n, n) for n in range(len(queries))} <= found
    assert set(distance[query == row].tolist()) == {radius}


def test_entries_match_the_same_before_and_after_compaction(rng, tmp_path):
    registry = Registry(snapshot_dir=tmp_path, delta_limit=10)
    hashes = random_hex(rng, 50)
    for n, code in enumerate(hashes):
        registry.register(
            registration(f"e{n}", [code], sha256=f"{n + 1:064x}", md5=f"{n + 1:032x}")
        )
    queries = [[flipped(hashes[7], 20, rng)], [hashes[30]]]
    before = registry.near(queries, 31)
    registry.compact({0: 50}, background=False)
    assert registry.offsets == {0: 50}
    assert registry.near(queries, 31) == before
    assert [e.entry_id for e in before[0]] == ["e7"]
    assert [e.entry_id for e in registry.exact("sha256", f"{6:064x}")] == ["e5"]
    assert [e.entry_id for e in registry.exact("md5", f"{1:032x}")] == ["e0"]


def test_withdrawals_and_replacements_apply_across_generations(rng, tmp_path):
    registry = Registry(snapshot_dir=tmp_path)
    a, b = random_hex(rng, 2)
    registry.register(registration("e1", [a]))
    registry.compact({0: 1}, background=False)
    assert registry.withdraw("e1")
    assert not registry.withdraw("e1")
    assert registry.near([[a]], 0) == [{}]
    registry.register(registration("e1", [b], bank="regulator"))
    (found,) = registry.near([[b]], 0)
    assert [(e.entry_id, e.bank) for e in found] == [("e1", "regulator")]
    registry.compact({0: 3}, background=False)
    assert registry.near([[a], [b]], 0)[0] == {}
    assert [e.bank for e in registry.near([[b]], 0)[0]] == ["regulator"]


def test_a_withdrawal_during_compaction_is_not_lost(rng, tmp_path, monkeypatch):
    registry = Registry(snapshot_dir=tmp_path)
    a, b = random_hex(rng, 2)
    registry.register(registration("e1", [a]))
    registry.register(registration("e2", [b]))
    original_build = registry._build

    def build_with_a_withdrawal_in_the_middle(*args):
        registry.withdraw("e1")  # arrives while the next generation is being built
        original_build(*args)

    monkeypatch.setattr(registry, "_build", build_with_a_withdrawal_in_the_middle)
    registry.compact({0: 2}, background=False)
    assert registry.near([[a], [b]], 0)[0] == {}
    assert [e.entry_id for e in registry.near([[b]], 0)[0]] == ["e2"]


def test_a_restart_loads_the_latest_snapshot_with_its_offsets(rng, tmp_path):
    registry = Registry(snapshot_dir=tmp_path)
    codes = random_hex(rng, 5)
    for n, code in enumerate(codes):
        registry.register(registration(f"e{n}", [code], sha256="ab" * 32))
    registry.compact({0: 5, 1: 2}, background=False)
    registry.register(registration("e9", [codes[0]]))
    registry.compact({0: 6, 1: 2}, background=False)
    assert len(list(tmp_path.glob("generation-*"))) == 1, "older snapshots are pruned"

    restarted = Registry(load_latest(tmp_path), tmp_path)
    assert restarted.offsets == {0: 6, 1: 2}
    assert {e.entry_id for e in restarted.near([[codes[0]]], 0)[0]} == {"e0", "e9"}
    assert len(restarted.exact("sha256", "ab" * 32)) == 5
    assert restarted.counts() == {"pdq": 6, "sha256": 5, "md5": 0, "embedding": 0, "face": 0}


def test_no_snapshot_means_none(tmp_path):
    assert load_latest(tmp_path / "missing") is None
    (tmp_path / "generation-1.partial").mkdir()
    assert load_latest(tmp_path) is None


def test_every_id_is_found_and_absent_ids_rarely_pass_the_bloom_filter():
    from services.matcher.bloom import bloom_filter, bloom_has, id_hashes
    from services.matcher.building import bulk

    count = 20_000
    ids = np.char.add(b"entry-", np.arange(count).astype("S8"))
    arrays = {
        "ids": ids,
        "bank": np.zeros(count, np.uint16),
        "pdq_key": np.arange(count, dtype=np.uint32),
    }
    codes = np.random.default_rng(1).integers(0, 2**63, (count, 4), dtype=np.uint64)
    generation = bulk(arrays, codes, ["kids"], {}, Path())
    assert all(generation.key_of(f"entry-{n}") == n for n in range(0, count, 97))
    assert generation.key_of("entry-absent") is None
    absent = np.char.add(b"other-", np.arange(count).astype("S8"))
    false_positive_rate = bloom_has(bloom_filter(id_hashes(ids)), id_hashes(absent)).mean()
    assert false_positive_rate < 0.02


def test_a_compaction_with_index_tables_finds_what_brute_force_finds(rng, tmp_path, monkeypatch):
    monkeypatch.setattr(mih, "FLAT_BELOW", 64)  # force the multi-index tables, written to disk
    registry = Registry(snapshot_dir=tmp_path)
    hashes = random_hex(rng, 300)
    for n, code in enumerate(hashes):
        registry.register(registration(f"e{n}", [code]))
    registry.compact({0: 300}, background=False)
    assert (next(tmp_path.glob("generation-*")) / "offsets00.npy").exists()
    queries = [[flipped(hashes[n], int(rng.integers(0, 32)), rng)] for n in range(0, 300, 7)]
    found = registry.near(queries, 31)
    for n, near in zip(range(0, 300, 7), found, strict=True):
        assert f"e{n}" in {entry.entry_id for entry in near}
    restarted = Registry(load_latest(tmp_path), tmp_path)
    assert restarted.near(queries, 31) == found


def test_a_snapshot_too_old_to_trust_the_topic_tail_is_not_loaded(rng, tmp_path, monkeypatch):
    registry = Registry(snapshot_dir=tmp_path)
    registry.register(registration("e1", random_hex(rng, 1)))
    registry.compact({0: 1}, background=False)
    assert load_latest(tmp_path, max_age_s=3600) is not None
    later = time.time() + 7200  # two hours on: tombstones in the tail may be gone
    monkeypatch.setattr(time, "time", lambda: later)
    assert load_latest(tmp_path, max_age_s=3600) is None


def test_a_quiet_registry_keeps_its_snapshot_current(rng, tmp_path, monkeypatch):
    registry = Registry(snapshot_dir=tmp_path, snapshot_max_age_s=3600)
    registry.register(registration("e1", random_hex(rng, 1)))
    registry.compact({0: 1}, background=False)
    later = time.time() + 7200
    monkeypatch.setattr(time, "time", lambda: later)
    registry.mark_current()  # caught up, nothing pending: the snapshot still reflects everything
    assert load_latest(tmp_path, max_age_s=3600) is not None


def test_pending_changes_are_compacted_before_the_snapshot_grows_too_old(rng, tmp_path):
    registry = Registry(snapshot_dir=tmp_path, snapshot_max_age_s=0.2, snapshot_interval_s=1e9)
    for n in range(2000):
        registry.register(registration(f"e{n}", random_hex(rng, 1)))
    registry.compact({0: 2000}, background=False)
    registry.withdraw("e7")  # one change: far under the thousandth that triggers a snapshot
    assert not registry.needs_compaction()
    time.sleep(0.15)
    assert registry.needs_compaction()
    registry.compact({0: 2001}, background=False)
    assert not registry.needs_compaction()


def keypoints_text(rng, count=40):
    positions = rng.uniform(0, 500, (count, 2)).astype(np.float32)
    descriptors = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    return keypoints_to_text(Keypoints(positions, descriptors))


def test_keypoints_and_nearest_entries_survive_compaction_and_a_restart(rng, tmp_path):
    registry = Registry(snapshot_dir=tmp_path)
    texts = {f"e{n}": keypoints_text(rng) for n in range(3)}
    vectors = rng.normal(size=(3, 1280)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for n, (entry_id, text) in enumerate(texts.items()):
        signals = Signals(keypoints=text, embedding=[embedding_to_text(vectors[n])])
        registry.register(EntryRegistered(entry_id=entry_id, bank="kids", signals=signals))
    registry.register(registration("plain", random_hex(rng, 1)))

    def check(current):
        for entry_id, text in texts.items():
            found = current.keypoints_of(Entry(entry_id, "kids"))
            assert keypoints_to_text(found) == text
        assert current.keypoints_of(Entry("plain", "kids")) is None
        (nearest,) = current.nearest([vectors[1:2]], 2)
        assert nearest[0][0].entry_id == "e1"
        assert nearest[0][1] == pytest.approx(1.0, abs=1e-2) and len(nearest) == 2

    check(registry)
    registry.compact({0: 4}, background=False)
    check(registry)
    check(Registry(load_latest(tmp_path), tmp_path))
    registry.withdraw("e1")
    assert registry.keypoints_of(Entry("e1", "kids")) is None
    assert "e1" not in {entry.entry_id for entry, _ in registry.nearest([vectors[1:2]], 3)[0]}


def test_keypoints_stay_right_through_withdrawals_and_wider_rows(rng, tmp_path):
    registry = Registry(snapshot_dir=tmp_path)
    vector = embedding_to_text(np.ones(1280, dtype=np.float32) / np.sqrt(1280))
    texts = {f"e{n}": keypoints_text(rng, count=20 + n) for n in range(4)}

    def register(entry_id):
        signals = Signals(keypoints=texts[entry_id], embedding=[vector])
        registry.register(EntryRegistered(entry_id=entry_id, bank="kids", signals=signals))

    for entry_id in list(texts):
        register(entry_id)
    registry.compact({0: 4}, background=False)
    registry.withdraw("e1")
    texts["e4"] = keypoints_text(rng, count=90)  # wider than every row so far
    register("e4")
    registry.compact({0: 6}, background=False)
    for current in (registry, Registry(load_latest(tmp_path), tmp_path)):
        assert current.keypoints_of(Entry("e1", "kids")) is None
        for entry_id in ("e0", "e2", "e3", "e4"):
            assert (
                keypoints_to_text(current.keypoints_of(Entry(entry_id, "kids"))) == texts[entry_id]
            )


def test_the_snapshot_is_marked_current_only_when_the_follower_knows_it_is_level(
    rng, tmp_path, monkeypatch
):
    from services.matcher.applier import RegistryApplier
    from services.shared.metrics import MatcherMetrics

    registry = Registry(snapshot_dir=tmp_path)
    applier = RegistryApplier(registry, MatcherMetrics())
    marked = []
    monkeypatch.setattr(registry, "mark_current", lambda: marked.append(True))
    for behind in (None, 3):  # end offsets not known yet; or records still to apply
        applier.progress(behind, 0.0)
        applier.after_poll({0: 0})
    assert marked == []
    applier.progress(0, 0.0)
    applier.after_poll({0: 0})
    assert marked == [True]
