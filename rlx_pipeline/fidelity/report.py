"""The fidelity report: report.json, report.md and a mismatch timeline plot."""

from __future__ import annotations

import io
from pathlib import Path

from rlx_pipeline import storage
from rlx_pipeline.fidelity.measure import Fidelity
from rlx_pipeline.layout import DataLayout


def timeline_png(f: Fidelity) -> bytes | None:
    if not f.timeline:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [m for m, _, _ in f.timeline]
    rate = [1 - bad / n if n else 1.0 for _, n, bad in f.timeline]
    fig, ax = plt.subplots(figsize=(5, 2.4))
    ax.plot(minutes, rate, ".-", lw=1, ms=3)
    ax.set_xlabel("minute of the day (UTC)", fontsize=8)
    ax.set_ylabel("top-N match rate", fontsize=8)
    ax.set_ylim(min(min(rate), 0.99) - 0.005, 1.001)
    ax.tick_params(labelsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def to_markdown(f: Fidelity, image: str | None = None) -> str:
    if not f.measurable:
        return f"# Fidelity {f.symbol} {f.date}: NOT MEASURABLE\n\n{f.reason}"
    score = f.score
    lines = [
        f"# Fidelity {f.symbol} {f.date}: {score:.4%}"
        if score is not None
        else f"# Fidelity {f.symbol} {f.date}: -",
        "",
        f"Lake trade ids are **{f.trade_id_kind}**. Blocking figure: the minimum of the components below.",
        "",
        "| component | matched | total | share |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in f.components().items():
        lines.append(
            f"| {name} | {r.matched:,} | {r.total:,} | {'-' if r.value is None else f'{r.value:.4%}'} |"
        )
    raw = f.topn_raw
    lines += [
        "",
        f"Top-N with every level (unknowable ones included, not gated): {raw.matched:,}/{raw.total:,}"
        + (f" = {raw.value:.4%}" if raw.value is not None else "")
        + f"; golden levels beyond what the lake data can know: {f.unknowable_levels:,}.",
        "",
        f"Golden update ids missing from the reconstruction: {f.golden_ids_missing:,}; "
        f"reconstructed ids Binance never sent: {f.recon_ids_not_in_golden:,}.",
        "",
        f"Timing (ms): {f.timing_ms}",
    ]
    if f.mismatches:
        lines += ["", "First mismatches:", "", "```"] + [str(m) for m in f.mismatches[:20]] + ["```"]
    if image:
        lines += ["", f"![timeline]({image})"]
    return "\n".join(lines)


def write_report(layout: DataLayout, f: Fidelity) -> dict[str, Path]:
    out = layout.report_dir("fidelity", f.date, f.symbol)
    paths: dict[str, Path] = {}
    png = timeline_png(f)
    if png:
        paths["timeline"] = storage.write_bytes(out / "timeline.png", png)
    paths["json"] = storage.write_json(out / "report.json", f.to_dict())
    paths["md"] = storage.write_text(out / "report.md", to_markdown(f, "timeline.png" if png else None))
    return paths
