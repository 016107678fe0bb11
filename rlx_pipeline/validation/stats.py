"""Statistics that hold up on market data (docs/statistics.md): K-S gated on D, CSN power-law tails.

Everything works on value histograms (``Hist``: sorted distinct values and their counts), which is what makes
the statistics streaming and exact at once: a day of trade sizes has a few 10^4 distinct fixed-point sizes
however many trades it has, inter-arrival times are whole milliseconds (Binance's resolution), levels per message
are small integers. A histogram is built batch by batch and merged, and the ECDF it gives is the sample's ECDF:

- ``ks_hist``: two-sample Kolmogorov-Smirnov D, exactly (same ties rule as scipy's ``ks_2samp``; the maximum
  of ``|ca*nb - cb*na|`` in integers, divided once, which is scipy's exact-mode value bit for bit), its asymptotic p-value (scipy's formula; reported, never gated: at these sample sizes
  any real difference is "significant") and the exact Wasserstein distance of the two ECDFs.
- ``power_law_hist``: Clauset-Shalizi-Newman continuous MLE of the density exponent alpha, xmin chosen by the
  minimum K-S distance over candidate xmins, a bootstrap standard error (multinomial resampling of the tail at
  the chosen xmin), and Vuong's normalized likelihood ratio against a lognormal tail fitted on the same data.

``ks`` and ``power_law`` take plain arrays (a notebook's entry points) and go through the same code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

MIN_KS = 20  # fewer values a side: the comparison says nothing
MIN_TAIL = 100  # fewer positive values: no tail fit
PENDING_MAX = 262_144  # values buffered by Hist.add before a merge (bounds the memory of a histogram)


@dataclass
class Hist:
    """Counts of distinct values; ``add`` buffers batches and merges them when the buffer grows."""

    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _pending: list[np.ndarray] = field(default_factory=list, repr=False)
    _pending_n: int = field(default=0, repr=False)

    @classmethod
    def of(cls, x: np.ndarray, counts: np.ndarray | None = None) -> Hist:
        h = cls()
        if counts is None:
            h.add(np.asarray(x))
        else:
            h._merge(np.asarray(x), np.asarray(counts, dtype=np.int64))
        return h.compact()

    def add(self, x: np.ndarray) -> None:
        if len(x):
            self._pending.append(x)
            self._pending_n += len(x)
            if self._pending_n >= PENDING_MAX:
                self.compact()

    def _merge(self, values: np.ndarray, counts: np.ndarray) -> None:
        if not len(values):
            return
        if len(self.values):
            values = np.concatenate([self.values.astype(values.dtype, copy=False), values])
            counts = np.concatenate([self.counts, counts])
        uniq, inv = np.unique(values, return_inverse=True)
        self.values = uniq
        self.counts = np.bincount(inv, weights=counts, minlength=len(uniq)).astype(np.int64)

    def compact(self) -> Hist:
        if self._pending:
            uniq, cnt = np.unique(np.concatenate(self._pending), return_counts=True)
            self._pending.clear()
            self._pending_n = 0
            self._merge(uniq, cnt.astype(np.int64))
        return self

    @property
    def n(self) -> int:
        self.compact()
        return int(self.counts.sum())

    def finite(self) -> Hist:
        self.compact()
        ok = np.isfinite(self.values) if self.values.dtype.kind == "f" else np.ones(len(self.values), bool)
        return Hist(self.values[ok], self.counts[ok])

    def quantile(self, q: float) -> float:
        self.compact()
        cum = np.cumsum(self.counts)
        return float(self.values[min(np.searchsorted(cum, q * cum[-1]), len(cum) - 1)])


@dataclass(frozen=True)
class KS:
    metric: str
    d: float
    p_value: float
    wasserstein: float
    n_hist: int
    n_golden: int
    sampled: bool = False  # always False now: D is exact over every value (kept for report compatibility)

    def to_dict(self) -> dict:
        return asdict(self)


def _cum_counts(a: Hist, b: Hist) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The merged grid of values and each sample's cumulative count at every grid value (the ECDF times n)."""
    grid = np.union1d(a.values, b.values)
    out = []
    for h in (a, b):
        c = np.zeros(len(grid), np.int64)
        c[np.searchsorted(grid, h.values)] = h.counts
        out.append(np.cumsum(c))
    return grid, out[0], out[1]


def ks_hist(metric: str, hist: Hist, golden: Hist) -> KS | None:
    """Exact two-sample K-S of two histograms; None when either side has fewer than ``MIN_KS`` values."""
    a, b = hist.finite(), golden.finite()
    na, nb = int(a.counts.sum()), int(b.counts.sum())
    if na < MIN_KS or nb < MIN_KS:
        return None
    grid, ca, cb = _cum_counts(a, b)
    # D = max |ca/na - cb/nb| as an exact rational, rounded once: scipy's exact-mode value bit for bit
    num = int(np.max(np.abs(ca * nb - cb * na)))
    d = num / (na * nb)
    fa, fb = ca / na, cb / nb
    from scipy import stats as sps  # here: scipy.stats costs ~1 s of import in every process loading the code

    m, n = sorted([float(na), float(nb)], reverse=True)
    p = float(np.clip(sps.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))
    w = float(np.sum(np.abs(fa - fb)[:-1] * np.diff(grid.astype(np.float64))))
    return KS(metric, d, p, w, na, nb)


def ks(metric: str, hist: np.ndarray, golden: np.ndarray) -> KS | None:
    return ks_hist(metric, Hist.of(np.asarray(hist, np.float64)), Hist.of(np.asarray(golden, np.float64)))


@dataclass(frozen=True)
class PowerLaw:
    alpha: float
    xmin: float
    n_tail: int
    n: int
    ks_d: float
    alpha_se: float
    lr_vs_lognormal: float  # normalized log-likelihood ratio (Vuong); > 0 favours the power law
    lr_p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def _alpha(x: np.ndarray, w: np.ndarray, xmin: float) -> float:
    return 1.0 + float(w.sum()) / float((w * np.log(x / xmin)).sum())


def power_law_hist(
    h: Hist, *, bootstrap: int = 20, seed: int = 0, max_candidates: int = 200
) -> PowerLaw | None:
    """CSN fit of the upper tail of the positive values of ``h``; None with fewer than ``MIN_TAIL`` of them."""
    h = h.finite()
    pos = h.values > 0
    x, w = h.values[pos].astype(np.float64), h.counts[pos]
    n = int(w.sum())
    if n < MIN_TAIL or len(x) < 3:
        return None
    # suffix sums give alpha for every candidate xmin in O(1): sum w log(x/xmin) = S_log - S_w * log(xmin)
    s_w = np.cumsum(w[::-1])[::-1]
    s_log = np.cumsum((w * np.log(x))[::-1])[::-1]
    cand = np.arange(len(x) - 1)
    ok = (s_w[cand] >= 50) & (s_w[cand] >= 0.001 * n)
    cand = cand[ok]
    if not len(cand):
        return None
    if len(cand) > max_candidates:
        cand = np.unique(cand[np.linspace(0, len(cand) - 1, max_candidates).astype(int)])
    best = (math.nan, math.nan, math.inf, -1)
    for k in cand:
        xmin = x[k]
        denom = s_log[k] - s_w[k] * math.log(xmin)
        if denom <= 0:
            continue
        alpha = 1.0 + s_w[k] / denom
        tx, tw = x[k:], w[k:]
        cum = np.cumsum(tw) / s_w[k]
        model = 1.0 - (tx / xmin) ** (1.0 - alpha)
        d = float(max(np.max(np.abs(cum - model)), np.max(np.abs(cum - tw / s_w[k] - model))))
        if d < best[2]:
            best = (float(alpha), float(xmin), d, int(k))
    alpha, xmin, d, k = best
    if k < 0:
        return None
    tx, tw = x[k:], w[k:]
    n_tail = int(tw.sum())
    rng = np.random.default_rng(seed)
    boots = [_alpha(tx, rng.multinomial(n_tail, tw / n_tail), xmin) for _ in range(bootstrap)]
    se = float(np.std(boots, ddof=1)) if bootstrap > 1 else math.nan
    # Vuong test: power law vs lognormal truncated at xmin, both on the tail (weighted by counts)
    from scipy import stats as sps  # here: see ks_hist

    lx = np.log(tx)
    lp = math.log((alpha - 1) / xmin) - alpha * np.log(tx / xmin)
    mu = float((tw * lx).sum() / n_tail)
    sigma = math.sqrt(float((tw * (lx - mu) ** 2).sum() / n_tail)) or 1e-9
    norm_tail = sps.norm.sf((math.log(xmin) - mu) / sigma)
    ll = sps.norm.logpdf(lx, mu, sigma) - lx - math.log(max(norm_tail, 1e-300))
    diff = lp - ll
    r = float((tw * diff).sum())
    s = math.sqrt(float((tw * (diff - r / n_tail) ** 2).sum() / n_tail) * n_tail)
    p = float(2 * sps.norm.sf(abs(r) / s)) if s > 0 else math.nan
    return PowerLaw(alpha, xmin, n_tail, n, d, se, r / s if s else math.nan, p)


def power_law(values: np.ndarray, **kw) -> PowerLaw | None:
    """CSN fit of the upper tail of positive ``values``; None when fewer than ``MIN_TAIL`` positive values."""
    return power_law_hist(Hist.of(np.asarray(values, np.float64)), **kw)
