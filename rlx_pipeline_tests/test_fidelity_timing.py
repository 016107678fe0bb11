"""The fidelity report's timing figures from ``TimingDist``: exactly what ``np.percentile`` (linear), min, max and
the histograms give on the values in ms, in memory bounded by the distinct values when they repeat."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rlx_pipeline.fidelity.measure import TimingDist, ns_to_ms_polars


def _numpy(x: np.ndarray) -> dict:
    """The figures as the report computed them from every value (ms) before ``TimingDist``."""
    out = {f"p{q}": float(np.percentile(x, q)) for q in (1, 50, 99)}
    out.update(min=float(x.min()), max=float(x.max()), nonzero=int((x != 0).sum()), n=len(x))
    return out


def _fed(ns: np.ndarray, rng: np.random.Generator, dist: TimingDist | None = None) -> TimingDist:
    """``ns`` fed in random batches, some value by value."""
    dist = TimingDist() if dist is None else dist
    i = 0
    while i < len(ns):
        k = int(rng.integers(1, 50))
        if rng.random() < 0.3:
            for v in ns[i : i + k].tolist():
                dist.append(v)
        else:
            dist.add(ns[i : i + k])
        i += k
    return dist


def _cases(rng: np.random.Generator) -> list[np.ndarray]:
    ms = 1_000_000
    return [
        np.array([0]),
        np.array([5 * ms]),
        np.array([-3 * ms, 7 * ms]),
        np.zeros(101, np.int64),
        rng.integers(-5, 60, 1_000) * ms,  # a millisecond grid: counts form
        rng.integers(-30 * ms, 110 * ms, 997),  # distinct ns: values form
        np.r_[rng.integers(0, 3, 600) * ms, rng.integers(1, 10**9, 500)],  # counts form, then values form
        rng.integers(-(2**60), 2**60, 333),
        rng.integers(0, 10, 2) * 123_456_789,
    ]


@pytest.mark.parametrize("flush", [3, 64, 1 << 16])
def test_timing_dist_gives_numpy_percentiles_exactly(monkeypatch, flush):
    monkeypatch.setattr(TimingDist, "_FLUSH", flush)
    rng = np.random.default_rng(11)
    for ns in _cases(rng):
        for _ in range(3):
            rng.shuffle(ns)
            dist = _fed(ns, rng)
            x = ns / 1e6
            assert dist.summary() == _numpy(x), ns[:5]
            assert np.array_equal(dist.values_ms(), np.sort(x))
            v, counts = dist.histogram_input()
            hist, edges = np.histogram(v, bins=50, weights=counts)
            want, want_edges = np.histogram(x, bins=50)
            assert np.array_equal(hist, want) and np.array_equal(edges, want_edges)
            assert hist.dtype == want.dtype


def test_timing_dist_holds_distinct_values_not_every_value(monkeypatch):
    """A day of millisecond-grid origin differences is a handful of (value, count) pairs; distinct receive
    differences in ns are held as themselves, 8 bytes a value (before: floats, and a second copy to sort)."""
    rng = np.random.default_rng(5)
    grid = TimingDist()
    for _ in range(40):
        grid.add(rng.integers(-2, 30, 50_000) * 1_000_000)
    assert grid.raw is None and grid.values.size <= 32 and len(grid) == 2_000_000
    assert grid.values.nbytes + grid.counts.nbytes <= 32 * 16
    distinct = TimingDist()
    for _ in range(40):
        distinct.add(rng.integers(0, 10**11, 50_000))
    distinct.summary()
    assert distinct.raw is not None and sum(a.nbytes for a in distinct.raw) == 8 * 2_000_000
    assert distinct.values.size == 0


def test_trade_timing_in_ms_as_polars_computed_it():
    """The trade figures were computed in polars, whose ``/ 1e6`` multiplies by the reciprocal: a value in the last
    bit apart from numpy's division for some ns (the 24 h day's p99 of receive minus capture: 21.16205299999992
    against 21.162052999999922). The trade series keep polars' values."""
    rng = np.random.default_rng(2)
    ns = rng.integers(-30_000_000, 110_000_000, 5_000)
    frame = pl.DataFrame({"t": ns, "gt": np.zeros(len(ns), np.int64)})
    as_before = frame.select((pl.col("t") - pl.col("gt")) / 1e6)["t"].to_numpy()
    assert _fed(ns, rng, TimingDist(ns_to_ms_polars)).summary() == _numpy(as_before)
    assert np.array_equal(TimingDist(ns_to_ms_polars).to_ms(ns), as_before)
    assert _fed(ns, rng).summary() != _numpy(as_before)  # the case tells the two apart
