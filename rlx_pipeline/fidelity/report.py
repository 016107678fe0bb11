"""The fidelity report: report.json, report.md and PNG plots (match rate over the day, timing histograms,
spread of the golden book against the reconstruction), all written atomically through ``storage``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rlx_pipeline import fixed_point, storage
from rlx_pipeline.fidelity.measure import Fidelity
from rlx_pipeline.layout import DataLayout


def _fig(w: float = 5.0, h: float = 2.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(w, h))
    ax.tick_params(labelsize=7)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def timeline_png(f: Fidelity) -> bytes | None:
    """Top-N and bookTicker match rate per minute of the day."""
    if not f.timeline:
        return None
    plt, fig, ax = _fig()
    minutes = [t["minute"] for t in f.timeline]
    top = [1 - t["topN_mismatched"] / t["compared"] if t["compared"] else np.nan for t in f.timeline]
    bt = [
        1 - t["book_ticker_mismatched"] / t["book_ticker_compared"] if t["book_ticker_compared"] else np.nan
        for t in f.timeline
    ]
    ax.plot(minutes, top, ".-", lw=1, ms=3, label="top-N (knowable levels)")
    ax.plot(minutes, bt, "x", ms=3, label="bookTicker")
    lowest = np.nanmin(np.array(top + bt, dtype=float)) if minutes else 1.0
    ax.set_ylim(min(lowest, 0.99) - 0.005, 1.001)
    ax.set_xlabel("minute of the day (UTC)", fontsize=8)
    ax.set_ylabel("match rate", fontsize=8)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def timing_png(f: Fidelity) -> bytes | None:
    """Histograms of reconstructed origin_time minus golden event time (trades and book messages)."""
    series = {k: v for k, v in f.timing_samples.items() if k in ("trade_origin", "book_origin") and len(v)}
    if not series:
        return None
    plt, fig, ax = _fig()
    for name, dist in series.items():
        # distinct values weighted by their integer counts: np.histogram gives the bins and heights of the values
        x, counts = dist.histogram_input()
        label = f"{name.replace('_', ' ')} (n={len(dist):,})"
        ax.hist(x, bins=50, weights=counts, histtype="step", label=label)
    ax.set_xlabel("reconstructed origin_time - golden event time (ms)", fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return _png(plt, fig)


def spread_png(f: Fidelity) -> bytes | None:
    """Mean spread per minute: the golden book against the reconstruction."""
    pts = [t for t in f.timeline if t["golden_spread_mean"] is not None]
    if not pts:
        return None
    plt, fig, ax = _fig()
    scale = 10**fixed_point.SCALE
    m = [t["minute"] for t in pts]
    ax.plot(m, [t["golden_spread_mean"] / scale for t in pts], "-", lw=1.5, label="golden")
    ax.plot(m, [t["recon_spread_mean"] / scale for t in pts], "--", lw=1, label="reconstruction")
    ax.set_xlabel("minute of the day (UTC)", fontsize=8)
    ax.set_ylabel("mean spread", fontsize=8)
    ax.legend(fontsize=7)
    return _png(plt, fig)


def intervals_png(f: Fidelity) -> bytes | None:
    """The day as a timeline: the stream's invalid intervals (red: book_valid false, flagged not wrong) and the
    golden reference's own untrusted spans (orange: after a capture gap, until its next snapshot)."""
    if not (f.intervals or f.golden_invalid_spans):
        return None
    plt, fig, ax = _fig(6.0, 1.6)
    hour = 3.6e12
    day0 = min([i["start"] for i in f.intervals] + [g["start_ns"] for g in f.golden_invalid_spans])
    day0 -= day0 % (86_400 * 10**9)
    for i in f.intervals:
        a, b = (i["start"] - day0) / hour, (i["end"] - day0) / hour
        ax.axvspan(a, max(b, a + 1e-3), ymin=0.5, ymax=0.95, color="tab:red")
    for g in f.golden_invalid_spans:
        a = (g["start_ns"] - day0) / hour
        b = (g["end_ns"] - day0) / hour if g["end_ns"] is not None else 24.0
        ax.axvspan(a, max(b, a + 1e-3), ymin=0.05, ymax=0.45, color="tab:orange")
    ax.set_xlim(0, 24)
    ax.set_yticks([0.25, 0.72], ["golden", "stream"], fontsize=7)
    ax.set_xlabel(
        f"hour of the day (UTC): {len(f.intervals)} invalid intervals (red), "
        f"{len(f.golden_invalid_spans)} golden gaps (orange)",
        fontsize=8,
    )
    return _png(plt, fig)


def _ts(ns: int) -> str:
    return np.datetime_as_string(np.datetime64(ns, "ns"), unit="ms")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.4%}"


def to_markdown(f: Fidelity, images: dict[str, str] | None = None, threshold: float | None = None) -> str:
    if not f.measurable:
        return f"# Fidelity {f.symbol} {f.date}: NOT MEASURABLE (not checked)\n\n{f.reason}"
    score = f.score
    verdict = "" if threshold is None or score is None else (" PASS" if score >= threshold else " FAIL")
    lines = [
        f"# Fidelity {f.symbol} {f.date}: {_pct(score)}{verdict}",
        "",
        f"Lake trade ids are **{f.trade_id_kind}**. Blocking figure: the minimum of the components below"
        + (f" (threshold {threshold:.3%})." if threshold is not None else "."),
        "",
        "| component | matched | total | share |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in f.components().items():
        lines.append(f"| {name} | {r.matched:,} | {r.total:,} | {_pct(r.value)} |")
    raw, gs = f.topn_raw, f.golden_self_book_ticker
    lines += [
        "",
        "Not gated:",
        "",
        "| figure | matched | total | share |",
        "| --- | --- | --- | --- |",
        f"| top-{f.top_n} with every level (unknowable included) | {raw.matched:,} | {raw.total:,} "
        f"| {_pct(raw.value)} |",
        f"| golden book (snapshot + diffs) vs golden bookTicker | {gs.matched:,} | {gs.total:,} | {_pct(gs.value)} |",
        "",
        f"Golden levels beyond what the lake data can know (unknowable, not wrong): {f.unknowable_levels:,}.",
        "",
        f"Book states inside the stream's invalid intervals (flagged, not wrong; not gated): {f.flagged.total:,} "
        f"compared, {f.flagged.matched:,} equal anyway. Golden spans without a valid reference (after a capture "
        f"gap, until its next snapshot; nothing compared there): {len(f.golden_invalid_spans)}.",
        "",
        f"Update ids: golden {f.golden_update_ids:,}, reconstructed {f.recon_update_ids:,}; golden ids missing "
        f"from the reconstruction (anywhere in the golden window): {f.golden_ids_missing:,}; reconstructed ids "
        f"Binance never sent: {f.recon_ids_not_in_golden:,} (inside the common id range).",
    ]
    for title, runs in (
        ("Missing in the reconstruction", f.missing_ranges),
        ("Not in golden", f.extra_ranges),
    ):
        if runs:
            lines += [
                "",
                f"{title} (largest runs):",
                "",
                "| first u | last u | ids | from | to |",
                "| --- " * 5 + "|",
            ]
            lines += [
                f"| {r['first_u']} | {r['last_u']} | {r['count']} | {r['from']} | {r['to']} |" for r in runs
            ]
    if f.intervals:
        lines += [
            "",
            f"Invalid intervals of the stream ({len(f.intervals)}; `book_valid` false):",
            "",
            "| start | end | first u | last u | cause | messages |",
            "| --- " * 6 + "|",
        ]
        lines += [
            f"| {_ts(i['start'])} | {_ts(i['end'])} | {i['first_update_id']} | {i['last_update_id']} "
            f"| {i['cause']} | {i['messages']:,} |"
            for i in f.intervals[:50]
        ]
    if f.replay:
        lines += ["", "Golden replay: " + ", ".join(f"{k} {v:,}" for k, v in f.replay.items())]
    if f.timing_ms:
        lines += ["", "| timing (ms) | p1 | p50 | p99 | min | max | nonzero | n |", "| --- " * 8 + "|"]
        for k, d in f.timing_ms.items():
            lines.append(
                f"| {k} | {d['p1']:.1f} | {d['p50']:.1f} | {d['p99']:.1f} | {d['min']:.1f} | {d['max']:.1f} "
                f"| {d['nonzero']:,} | {d['n']:,} |"
            )
    if f.mismatches:
        lines += ["", "First mismatches (prices and sizes in 1e-8 units):", "", "```"]
        lines += [str(m) for m in f.mismatches[:40]] + ["```"]
    for name, src in (images or {}).items():
        lines += ["", f"![{name}]({src})"]
    return "\n".join(lines)


def write_report(layout: DataLayout, f: Fidelity, threshold: float | None = None) -> dict[str, Path]:
    """report.json, report.md and the PNGs (only those with data) under ``reports/fidelity/dt=/symbol=/``."""
    out = layout.report_dir("fidelity", f.date, f.symbol)
    paths: dict[str, Path] = {}
    renders = (
        ("timeline", timeline_png),
        ("timing", timing_png),
        ("spread", spread_png),
        ("intervals", intervals_png),
    )
    for name, render in renders:
        png = render(f)
        if png:
            paths[name] = storage.write_bytes(out / f"{name}.png", png)
        else:
            (out / f"{name}.png").unlink(missing_ok=True)  # no stale plot from an earlier run
    body = f.to_dict()
    body["threshold"] = threshold
    body["passed"] = None if f.score is None or threshold is None else f.score >= threshold
    paths["json"] = storage.write_json(out / "report.json", body)
    images = {k: f"{k}.png" for k in ("timeline", "timing", "spread", "intervals") if k in paths}
    paths["md"] = storage.write_text(out / "report.md", to_markdown(f, images, threshold))
    return paths
