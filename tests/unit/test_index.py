import numpy as np
import pytest

from services.matcher import index as index_module
from services.matcher.index import PdqIndex, VectorIndex, codes_from_hex


def _brute_force(codes, keys, queries, radius, dead=()):
    found = set()
    bits = np.unpackbits(codes, axis=1)
    for q, query in enumerate(np.unpackbits(queries, axis=1)):
        for row in np.flatnonzero((bits != query).sum(axis=1) <= radius):
            if keys[row] not in dead:
                found.add((q, int(keys[row]), int((bits[row] != query).sum())))
    return found


def _near(code, flips, rng):
    bits = np.unpackbits(code)
    bits[rng.choice(256, flips, replace=False)] ^= 1
    return np.packbits(bits)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_search_equals_brute_force_including_the_boundary(rng):
    codes = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    keys = np.arange(500) // 2  # two hashes per entry
    index = PdqIndex()
    for key in range(250):
        index.add(key, codes[keys == key])
    queries = np.stack([_near(codes[i], flips, rng) for i, flips in ((3, 31), (10, 32), (77, 0))])
    hits = {(h.query, h.key, h.distance) for h in index.search(queries, 31)}
    assert hits == _brute_force(codes, keys, queries, 31)
    assert (0, 1, 31) in hits
    assert not any(q == 1 and k == 5 for q, k, _ in hits)  # 32 bits away: outside


def test_withdrawn_keys_are_not_returned_and_compaction_keeps_the_rest(rng, monkeypatch):
    monkeypatch.setattr(index_module, "_COMPACT_MINIMUM", 10)
    codes = rng.integers(0, 256, (100, 32), dtype=np.uint8)
    index = PdqIndex()
    for key in range(100):
        index.add(key, codes[key : key + 1])
    dead = set(range(0, 100, 3))
    for key in sorted(dead):
        index.remove(key)
    assert len(index) == 100 - len(dead)
    hits = {(h.query, h.key, h.distance) for h in index.search(codes, 0)}
    assert hits == _brute_force(codes, np.arange(100), codes, 0, dead)


def test_an_empty_index_finds_nothing():
    assert PdqIndex().search(codes_from_hex(["0" * 64]), 31) == []


def test_hex_codes_round_trip():
    code = "0123456789abcdef" * 4
    assert codes_from_hex([code]).tobytes().hex() == code


def _unit_rows(rng, rows, dimensions=128):
    vectors = rng.normal(size=(rows, dimensions)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_large_vector_index_is_approximate_and_rechecks_every_candidate_exactly():
    rng = np.random.default_rng(3)
    rows = _unit_rows(rng, 20_000)
    exact, approximate = VectorIndex(128), VectorIndex(128, approximate_above=10_000)
    keys = np.arange(20_000)
    exact.add_rows(keys, rows)
    approximate.add_rows(keys, rows.astype(np.float16))
    assert approximate.approximate and not exact.approximate
    noise = _unit_rows(rng, 200)
    queries = rows[:200] * 0.8 + noise * 0.6
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    wanted = {(s.query, s.key) for s in exact.search(queries, 0.6)}
    found = approximate.search(queries, 0.6)
    assert len({(s.query, s.key) for s in found} & wanted) >= 0.95 * len(wanted)
    assert all(
        s.cosine == pytest.approx(float(rows[s.key] @ queries[s.query]), abs=2e-3) for s in found
    )
    assert [s.key for s in approximate.nearest(queries[:1], 1)] == [0]
    approximate.remove(0)
    assert 0 not in {s.key for s in approximate.search(queries[:1], 0.6)}
