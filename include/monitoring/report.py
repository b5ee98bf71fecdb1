"""The drift check's HTML report, rendered on the worker from the job's ``drift_report.json``.

The processing job (:mod:`include.monitoring.job`) leaves Model Monitor's files and the full
metrics in the batch's monitoring folder; this renders one self-contained HTML page from that
small report into the reports zone: a table of every column and, per column over threshold, a
plot of the reference against the batch (a PNG inlined as base64, drawn by matplotlib's Agg
backend, so no display and no external file is needed). matplotlib is the worker's, not the
training image's, which is why this module does not ship in the source tarball.
"""

from __future__ import annotations

import base64
import html
import io

from include.monitoring.drift import DriftReport, FeatureDrift
from include.storage import storage_for

# A categorical plot shows the categories with the largest shares; the rest are in the table.
MAX_PLOTTED_CATEGORIES = 20


def write_drift_html(report: DriftReport, report_uri: str) -> str:
    """Write the report's HTML page to ``report_uri`` (in the reports zone); returns the URI."""
    storage_for(report_uri).write_bytes(report_uri, render_html(report).encode("utf-8"))
    return report_uri


def render_html(report: DriftReport, title: str = "Drift report") -> str:
    """One self-contained HTML page: the verdict, a table of every column, a plot per column over
    threshold."""
    rows = "\n".join(_table_row(f) for f in report.features)
    plots = "\n".join(
        _plot_section(f) for f in report.features if f.over_threshold and f.plot is not None
    )
    metadata = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in report.metadata.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.over {{ background: #fde2e2; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="verdict"><strong>{html.escape(report.verdict)}</strong></p>
<p>{report.item_count} rows against a baseline of {report.reference_item_count} rows.</p>
<ul>{metadata}</ul>
<table>
<tr><th>column</th><th>kind</th><th>psi</th><th>ks</th><th>js</th><th>linf</th>
<th>unseen rate</th><th>missing rate change</th><th>violations</th></tr>
{rows}
</table>
{plots}
</body>
</html>
"""


def _table_row(feature: FeatureDrift) -> str:
    def cell(metric: str) -> str:
        value = feature.metrics.get(metric)
        if value is None:
            return "<td>-</td>"
        threshold = feature.thresholds.get(metric)
        limit = f" / {threshold:.3g}" if threshold is not None else ""
        return f"<td>{value:.4g}{limit}</td>"

    checks = ", ".join(v.constraint_check_type for v in feature.violations) or "-"
    metrics = ("psi", "ks", "js", "linf", "unseen_rate", "missing_rate_change")
    css = ' class="over"' if feature.over_threshold else ""
    return (
        f"<tr{css}><td>{html.escape(feature.name)}</td><td>{feature.kind}</td>"
        + "".join(cell(m) for m in metrics)
        + f"<td>{html.escape(checks)}</td></tr>"
    )


def _plot_section(feature: FeatureDrift) -> str:
    descriptions = "".join(f"<li>{html.escape(v.description)}</li>" for v in feature.violations)
    png = plot_png(feature)
    return (
        f'<section id="{html.escape(feature.name)}"><h2>{html.escape(feature.name)}</h2>'
        f"<ul>{descriptions}</ul>"
        f'<img alt="{html.escape(feature.name)}: reference vs current" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></section>'
    )


def plot_png(feature: FeatureDrift) -> bytes:
    """A PNG of the reference's and the batch's distribution of one column."""
    import matplotlib

    matplotlib.use("Agg")  # no display in workers; must precede pyplot's import
    import matplotlib.pyplot as plt
    import numpy as np

    plot = feature.plot
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=90)
    try:
        if "edges" in plot:
            edges = np.asarray(plot["edges"])
            ax.stairs(plot["reference_shares"], edges, label="reference", linewidth=1.5)
            ax.stairs(plot["current_shares"], edges, label="current", linewidth=1.5)
            ax.set_xlabel(feature.name)
        else:
            order = np.argsort(-np.maximum(plot["reference_shares"], plot["current_shares"]))
            order = order[:MAX_PLOTTED_CATEGORIES]
            labels = [plot["categories"][i] for i in order]
            x = np.arange(len(labels))
            ax.bar(x - 0.2, np.asarray(plot["reference_shares"])[order], 0.4, label="reference")
            ax.bar(x + 0.2, np.asarray(plot["current_shares"])[order], 0.4, label="current")
            ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel("share of rows")
        ax.set_title(feature.summary())
        ax.legend()
        fig.tight_layout()
        buffer = io.BytesIO()
        # No timestamps in the PNG, so a re-run of the same batch writes the same bytes.
        fig.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(fig)
