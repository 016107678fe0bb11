"""The validation report of a day: report.json, report.md, PNG plots, and the verdict that gates reconstruction."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from rlx_pipeline import gate, storage
from rlx_pipeline.layout import DataLayout
from rlx_pipeline.settings import Thresholds
from rlx_pipeline.validation.day import DayValidation, day_start_ns


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ecdf_plot(v: DayValidation) -> bytes | None:
    """One panel per compared metric: the lake and golden ECDFs (exact, from the value histograms)."""
    if not v.hists:
        return None
    plt = _plt()
    names = list(v.hists)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6))
    d_by = {k.metric: k.d for k in v.ks}
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        for label, h in zip(("lake", "golden"), v.hists[name], strict=True):
            h = h.finite()
            if h.counts.sum():
                ax.step(h.values, np.cumsum(h.counts) / h.counts.sum(), where="post", label=label, lw=1)
        ax.set_title(f"{name}\nD={d_by.get(name, float('nan')):.3f}", fontsize=8)
        if name in ("trade_size", "inter_arrival_ms", "levels_per_message"):
            ax.set_xscale("symlog", linthresh=1e-3 if name == "trade_size" else 1)
        ax.tick_params(labelsize=6)
    np.atleast_1d(axes)[0].legend(fontsize=6)
    out = _png(fig)
    plt.close(fig)
    return out


def tail_plot(v: DayValidation) -> bytes | None:
    """Log-log CCDF of trade sizes per source with its fitted power law above xmin."""
    if "trade_size" not in v.hists:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3))
    for (label, h), color in zip(
        zip(("lake", "golden"), v.hists["trade_size"], strict=True), ("C0", "C1"), strict=True
    ):
        pos = h.values > 0
        x, c = h.values[pos], h.counts[pos]
        if not len(x):
            continue
        n = c.sum()
        ccdf = 1.0 - (np.cumsum(c) - c) / n
        ax.loglog(x, ccdf, ".", ms=2, color=color, label=label)
        fit = v.tails.get(label)
        if fit:
            xs = np.geomspace(fit.xmin, x[-1], 20)
            ax.loglog(
                xs,
                fit.n_tail / n * (xs / fit.xmin) ** (1 - fit.alpha),
                "-",
                color=color,
                lw=1,
                label=f"{label} alpha={fit.alpha:.2f} xmin={fit.xmin:.3g}",
            )
    ax.set_xlabel("trade size", fontsize=8)
    ax.set_ylabel("P(X >= x)", fontsize=8)
    ax.legend(fontsize=6)
    out = _png(fig)
    plt.close(fig)
    return out


def gap_plot(v: DayValidation) -> bytes:
    """The day in hours: golden-covered minutes, depth messages missing from the lake, pauses over 5 s."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 1.6))
    day0 = day_start_ns(v.date)
    if v.minutes is not None:
        for m in np.flatnonzero(v.minutes):
            ax.axvspan(m / 60, (m + 1) / 60, color="C2", alpha=0.25, lw=0)
    for s in v.gaps.get("silences_over_5s", []):
        h = (s["start_ns"] - day0) / 3.6e12
        ax.axvspan(h, h + s["seconds"] / 3600, color="C1", alpha=0.6, lw=0)
    miss = (np.asarray(v.gaps.get("missing_update_id_times_ns", []), dtype=np.float64) - day0) / 3.6e12
    if len(miss):
        ax.vlines(miss, 0, 1, color="C3", lw=1)
    ax.set_xlim(0, 24)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("hour (UTC)", fontsize=8)
    ax.set_title(
        f"green: golden coverage; red: {v.gaps.get('lake_missing_messages', 0)} depth messages missing in the lake; "
        f"orange: {len(v.gaps.get('silences_over_5s', []))} pauses > 5 s; "
        f"{v.gaps.get('trade_ids_missing', 0)} trade ids missing",
        fontsize=7,
    )
    ax.tick_params(labelsize=6)
    out = _png(fig)
    plt.close(fig)
    return out


def to_markdown(v: DayValidation, images: dict[str, str] | None = None) -> str:
    lines = [
        f"# Validation {v.symbol} {v.date}: {'PASSED' if v.passed else 'FAILED ' + ', '.join(v.failed)}"
        + (f" (not checked: {', '.join(v.not_checked)})" if v.not_checked else ""),
        "",
        "| check | status | value | threshold | n | detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in v.checks:
        val = "-" if c.value is None else f"{c.value:.4g}"
        lines.append(f"| {c.name} | {c.status} | {val} | {c.threshold:g} | {c.n:,} | {c.detail} |")
    if v.ks:
        lines += [
            "",
            "| metric | D | p-value (not gated) | Wasserstein | n lake | n golden |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for k in v.ks:
            lines.append(
                f"| {k.metric} | {k.d:.4f} | {k.p_value:.3g} | {k.wasserstein:.4g} | {k.n_hist:,} | {k.n_golden:,} |"
            )
    if v.tails:
        lines += [
            "",
            "| source | alpha | +- se | xmin | n tail | LR vs lognormal (p) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for src, t in v.tails.items():
            if t:
                lines.append(
                    f"| {src} | {t.alpha:.3f} | {t.alpha_se:.3f} | {t.xmin:.4g} | {t.n_tail:,} | {t.lr_vs_lognormal:.2f} ({t.lr_p_value:.2g}) |"
                )
    g = v.gaps
    cover = (
        f"{v.covered_minutes} minutes covered by golden samples"
        if v.covered_minutes > 0
        else ("whole tables compared" if v.covered_minutes < 0 else "no golden samples")
    )
    lines += [
        "",
        f"Window: {cover}; lake trades compared {v.scan.get('lake_trade_rows_compared', 0):,} of "
        f"{v.scan.get('lake_trade_rows', 0):,}, delta messages {v.scan.get('lake_delta_messages_compared', 0):,} of "
        f"{v.scan.get('lake_delta_messages', 0):,}. Policy without golden samples: "
        f"{'unchecked comparisons fail' if v.require_golden else 'lake-only checks decide'}.",
        "",
        "| gaps | count | of | rate |",
        "| --- | --- | --- | --- |",
        f"| golden depth messages missing in the lake | {g.get('lake_missing_messages', 0):,} | "
        f"{g.get('golden_depth_messages', 0):,} | {g.get('rates', {}).get('depth_messages', 0):.3g} |",
        f"| trade ids missing / duplicated | {g.get('trade_ids_missing', 0):,} / {g.get('trade_ids_duplicated', 0):,} | "
        f"{g.get('trade_id_span', 0):,} | {g.get('rates', {}).get('trade_ids', 0):.3g} |",
        f"| delta messages out of sequence order | {g.get('sequence_backwards', 0):,} | {g.get('lake_messages', 0):,} | "
        f"{g.get('rates', {}).get('sequence_order', 0):.3g} |",
        "",
        f"First missing update ids: {g.get('first_missing_update_ids', [])}; missing trade id ranges: "
        f"{g.get('missing_trade_id_ranges', [])}; pauses over 5 s: {len(g.get('silences_over_5s', []))}; "
        f"golden's own update-id breaks: {g.get('golden_own_breaks', 0)}.",
        "",
        "| origin_time | rows | null | zero | out of day | backwards | invalid share | latency p50 / p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, o in v.origin.items():
        lat = o.get("latency_ms") or {}
        lines.append(
            f"| {name} | {o['rows']:,} | {o['null']} | {o['zero']} | {o['out_of_day']} | {o['backwards']} | "
            f"{o['invalid_share']:.3g} | {lat.get('p50', float('nan')):.1f} / {lat.get('p99', float('nan')):.1f} |"
        )
    for name, uri in (images or {}).items():
        lines += ["", f"![{name}]({uri})"]
    return "\n".join(lines)


def write_report(
    layout: DataLayout,
    v: DayValidation,
    *,
    inputs: dict[str, str | None] | None = None,
    thresholds: Thresholds | None = None,
    run_id: str = "",
) -> dict[str, Path]:
    """Write everything atomically; the verdict last, so a crash never leaves a verdict without its report.

    The verdict records what was judged: ``inputs`` (``gate.input_fingerprints`` taken before the tables were
    read; default: taken now) and ``thresholds`` (the ones in force; default: none recorded, which a gate given the
    thresholds in force treats as a mismatch)."""
    out_dir = layout.report_dir("validation", v.date, v.symbol)
    paths: dict[str, Path] = {}
    images: dict[str, str] = {}
    for name, png in (("ecdf", ecdf_plot(v)), ("tail", tail_plot(v)), ("gaps", gap_plot(v))):
        if png:
            paths[name] = storage.write_bytes(out_dir / f"{name}.png", png)
            images[name] = f"{name}.png"
        else:
            (out_dir / f"{name}.png").unlink(missing_ok=True)  # no stale plot from an earlier run
    paths["json"] = storage.write_json(out_dir / "report.json", v.to_dict())
    paths["md"] = storage.write_text(out_dir / "report.md", to_markdown(v, images))
    paths["verdict"] = gate.write_verdict(
        layout,
        gate.Verdict(
            v.date,
            v.symbol,
            v.passed,
            [f"validation_{name}" for name in v.failed],  # the Dagster check names
            {c.name: c.value for c in v.checks if c.checked},
            inputs=inputs if inputs is not None else gate.input_fingerprints(layout, v.date, v.symbol),
            thresholds=gate.gated_thresholds(thresholds) if thresholds is not None else {},
            run_id=run_id,
            not_checked=[f"validation_{name}" for name in v.not_checked],
        ),
    )
    return paths


def lost_update_ids(layout: DataLayout, date: str, symbol: str) -> list[int]:
    """Final update ids of the depth messages the golden samples hold and the day's lake data lost (from the
    validation report; none without a report or golden samples): reconstruction flags the book from each."""
    path = layout.report_dir("validation", date, symbol) / "report.json"
    if not path.is_file():
        return []
    return [int(u) for u in json.loads(path.read_text()).get("gaps", {}).get("missing_update_ids", [])]
