"""The validation report of a day: report.json, report.md, PNG plots, and the verdict that gates reconstruction."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rlx_pipeline import gate, storage
from rlx_pipeline.layout import DataLayout
from rlx_pipeline.validation.day import DayValidation


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    return buf.getvalue()


def ecdf_plot(v: DayValidation) -> bytes | None:
    if not v.samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(v.samples)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6))
    d_by = {k.metric: k.d for k in v.ks}
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        for label, x in zip(("lake", "golden"), v.samples[name], strict=True):
            x = np.sort(x[np.isfinite(x)])
            if len(x):
                ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label, lw=1)
        ax.set_title(f"{name}\nD={d_by.get(name, float('nan')):.3f}", fontsize=8)
        if name in ("trade_size", "inter_arrival_ms", "levels_per_message"):
            ax.set_xscale("symlog")
        ax.tick_params(labelsize=6)
    np.atleast_1d(axes)[0].legend(fontsize=6)
    out = _png(fig)
    plt.close(fig)
    return out


def tail_plot(v: DayValidation) -> bytes | None:
    if "trade_size" not in v.samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    for (label, x), color in zip(
        zip(("lake", "golden"), v.samples["trade_size"], strict=True), ("C0", "C1"), strict=True
    ):
        x = np.sort(x[x > 0])
        if not len(x):
            continue
        ccdf = 1.0 - np.arange(len(x)) / len(x)
        ax.loglog(x, ccdf, ".", ms=2, color=color, label=label)
        fit = v.tails.get(label)
        if fit:
            xs = np.geomspace(fit.xmin, x[-1], 20)
            share = fit.n_tail / len(x)
            ax.loglog(
                xs,
                share * (xs / fit.xmin) ** (1 - fit.alpha),
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


def to_markdown(v: DayValidation, images: dict[str, str] | None = None) -> str:
    lines = [
        f"# Validation {v.symbol} {v.date}: {'PASSED' if v.passed else 'FAILED ' + ', '.join(v.failed)}",
        "",
        "| check | checked | passed | value | threshold | n | detail |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in v.checks:
        val = "-" if c.value is None else f"{c.value:.4g}"
        lines.append(
            f"| {c.name} | {c.checked} | {c.passed} | {val} | {c.threshold:g} | {c.n:,} | {c.detail} |"
        )
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
    lines += ["", f"Gaps: {v.gaps}", "", f"origin_time: {v.origin}"]
    for name, uri in (images or {}).items():
        lines += ["", f"![{name}]({uri})"]
    return "\n".join(lines)


def write_report(layout: DataLayout, v: DayValidation) -> dict[str, Path]:
    """Write everything atomically; the verdict last, so a crash never leaves a verdict without its report."""
    out_dir = layout.report_dir("validation", v.date, v.symbol)
    paths: dict[str, Path] = {}
    images: dict[str, str] = {}
    for name, png in (("ecdf", ecdf_plot(v)), ("tail", tail_plot(v))):
        if png:
            paths[name] = storage.write_bytes(out_dir / f"{name}.png", png)
            images[name] = f"{name}.png"
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
        ),
    )
    return paths
