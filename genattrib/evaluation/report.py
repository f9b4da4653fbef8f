"""Tables (rich) and a self-contained HTML report for evaluation and benchmark results.

Example:
    >>> from rich.console import Console
    >>> result = genattrib.benchmark(model, "saliency", metrics="comprehensiveness", max_new_tokens=2, max_examples=2)
    >>> html = benchmark_html(result)
    >>> Console().print(benchmark_table(result))
    LlamaForCausalLM · wikitext · 2 examples · wall ...
    ...
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.table import Table

from genattrib.evaluation.completeness import UNCONVERGED_MARK, Completeness
from genattrib.faithfulness.bootstrap import Interval
from genattrib.faithfulness.metrics import METRICS
from genattrib.models.results.convergence import COMPLETENESS_TOLERANCE

#: What the completeness column means, for captions and the HTML report.
COMPLETENESS_NOTE = (
    f"completeness: median over explained tokens of |completeness_error| / |F(x) - F(x')| (path methods; "
    f"'–': the method records none); {UNCONVERGED_MARK} unconverged: over {COMPLETENESS_TOLERANCE:.0%}, "
    "the scores are mostly approximation error"
)


def _fmt(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _cell(interval: Interval | None, best: bool) -> str:
    if interval is None:
        return ""
    text = f"{_fmt(interval.value)} [{_fmt(interval.low)}, {_fmt(interval.high)}]"
    return f"[bold green]{text}[/]" if best else text


def _arrow(metric: str) -> str:
    if metric in METRICS:
        return "↓" if METRICS[metric].lower_is_better else "↑"
    return "↓"


def completeness_label(value: Completeness | None) -> str:
    """The completeness cell: ``"0.034"``, ``"1.230 ⚠"`` (unconverged) or ``"–"`` (not recorded)."""
    return "–" if value is None else value.label()


def method_label(method: str, value: Completeness | None) -> str:
    """The method's name, with the unconverged mark when its scores are mostly approximation error."""
    return f"{method} {UNCONVERGED_MARK}" if value is not None and not value.converged else method


def summary_table(results: Mapping[str, Any]) -> Table:
    """Methods (rows) × metrics (columns) for :class:`EvaluationResult` objects keyed by method,
    and the methods' completeness (see :mod:`genattrib.evaluation.completeness`)."""
    metrics = list(dict.fromkeys(m for r in results.values() for m in r.summary))
    table = Table(
        box=box.SIMPLE_HEAVY, title="faithfulness (value [95% bootstrap interval])", caption=COMPLETENESS_NOTE
    )
    table.add_column("method")
    for m in metrics:
        table.add_column(f"{m} {_arrow(m)}", justify="right")
    table.add_column("completeness ↓", justify="right")
    for name, res in results.items():
        value = Completeness.from_dict(res.info.get("completeness"))
        table.add_row(
            method_label(name, value), *[_cell(res.summary.get(m), False) for m in metrics], completeness_label(value)
        )
    return table


def benchmark_table(result: Any) -> Table:
    """The benchmark as a narrow rich table: one section per metric (its name on the section's
    first row), one row per method, the best method of each metric in bold green (so it fits an
    80-column terminal whatever the number of methods)."""
    info = result.info
    title = (
        f"{info.get('model')} · {info.get('dataset')} · {info.get('examples')} examples"
        f" · wall {info.get('wall_seconds', 0):.0f} s"
    )
    table = Table(
        box=box.SIMPLE_HEAVY,
        title=title,
        caption="95% bootstrap intervals over examples; soft_ns/soft_nc: ln(Σ method / Σ random), 0 = random; "
        + COMPLETENESS_NOTE,
    )
    table.add_column("metric · method", no_wrap=True)
    for name in ("value", "95% interval", "completeness", "s/token"):
        table.add_column(name, justify="right", no_wrap=name != "s/token")
    for metric in result.metrics:
        best = result.best(metric)
        table.add_row(f"{metric} {_arrow(metric)}", style="bold")
        runs = [run for run in result.runs if result.interval(run.method, metric) is not None]
        for n, run in enumerate(runs):
            interval = result.interval(run.method, metric)
            style = "bold green" if run.method == best else ("dim" if run.method == "random" else None)
            per_token = run.attribute_seconds / run.tokens if run.tokens else float("nan")
            table.add_row(
                "  " + method_label(run.method, run.completeness),
                _fmt(interval.value),
                f"[{_fmt(interval.low)}, {_fmt(interval.high)}]",
                "" if run.method == "random" else completeness_label(run.completeness),
                _fmt(per_token),
                style=style,
                end_section=n == len(runs) - 1,
            )
    return table


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px} h2{font-size:16px;margin:24px 0 4px} .note{color:#666;font-size:13px}
svg text{font-size:12px;font-family:system-ui,sans-serif} .bar{fill:#4c78a8} .best{fill:#f58518} .rand{fill:#aaa}
table{border-collapse:collapse;font-size:13px} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}
"""


def _chart(result: Any, metric: str) -> str:
    rows = [(run.method, result.interval(run.method, metric)) for run in result.runs]
    rows = [(m, i) for m, i in rows if i is not None and math.isfinite(i.value)]
    if not rows:
        return "<p class='note'>no finite values</p>"
    values = [v for _, i in rows for v in (i.value, i.low, i.high) if math.isfinite(v)]
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = (hi - lo) or 1.0
    left, width, bar_h = 190, 560, 18
    x = lambda v: left + (v - lo) / span * width  # noqa: E731 - a local scale
    best = result.best(metric)
    completeness = {run.method: run.completeness for run in result.runs}
    parts = [
        f"<svg width='{left + width + 90}' height='{len(rows) * (bar_h + 6) + 10}' role='img' "
        f"aria-label='{html.escape(metric)}'>"
    ]
    for n, (method, i) in enumerate(rows):
        y = 5 + n * (bar_h + 6)
        cls = "rand" if method == "random" else ("best" if method == best else "bar")
        x0, x1 = sorted((x(0.0), x(i.value)))
        label = method_label(method, completeness.get(method))
        parts.append(f"<text x='{left - 6}' y='{y + 13}' text-anchor='end'>{html.escape(label)}</text>")
        parts.append(
            f"<rect class='{cls}' x='{x0:.1f}' y='{y}' width='{max(x1 - x0, 1):.1f}' height='{bar_h}'>"
            f"<title>{html.escape(method)}: {i.value:.4f}</title></rect>"
        )
        if math.isfinite(i.low) and math.isfinite(i.high):
            parts.append(
                f"<line x1='{x(i.low):.1f}' x2='{x(i.high):.1f}' y1='{y + bar_h / 2}' y2='{y + bar_h / 2}' "
                "stroke='#222'/>"
            )
        parts.append(f"<text x='{left + width + 6}' y='{y + 13}'>{i.value:.3f}</text>")
    parts.append(
        f"<line x1='{x(0.0):.1f}' x2='{x(0.0):.1f}' y1='0' y2='{len(rows) * (bar_h + 6) + 10}' stroke='#999'/></svg>"
    )
    return "".join(parts)


def _completeness_cell(value: Completeness | None) -> str:
    if value is None or value.steps == 0:
        return "–"
    return html.escape(f"{value.label()} ({value.share_over:.0%} of {value.steps})")


def benchmark_html(result: Any) -> str:
    """A self-contained page (inline CSS and SVG, no script, no network): one bar chart per metric."""
    info = result.info
    sections = []
    for metric in result.metrics:
        desc = METRICS[metric].description if metric in METRICS else ""
        direction = (
            "lower is better"
            if (METRICS[metric].lower_is_better if metric in METRICS else True)
            else "higher is better"
        )
        sections.append(
            f"<h2>{html.escape(metric)} <span class='note'>({direction})</span></h2>"
            f"<p class='note'>{html.escape(desc)}</p>{_chart(result, metric)}"
        )
    timing = "".join(
        f"<tr><td>{html.escape(method_label(r.method, r.completeness))}</td><td>{r.tokens}</td>"
        f"<td>{r.attribute_seconds:.1f}</td><td>{(r.result.info.get('seconds') or 0):.1f}</td>"
        f"<td>{_completeness_cell(r.completeness)}</td>"
        f"<td>{html.escape(json.dumps(r.params, default=str))}</td></tr>"
        for r in result.runs
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>genattrib benchmark</title><style>{_STYLE}</style></head><body>"
        f"<h1>Faithfulness of attribution methods on {html.escape(str(info.get('model')))}</h1>"
        f"<p class='note'>dataset {html.escape(str(info.get('dataset')))}, {info.get('examples')} examples, "
        f"bars: value, lines: 95% bootstrap interval over examples; orange: best method; grey: random scores.</p>"
        + "".join(sections)
        + "<h2>runs</h2><table><tr><th>method</th><th>tokens</th><th>attribution s</th>"
        + "<th>evaluation s</th><th>completeness (share of tokens over the tolerance)</th><th>parameters</th></tr>"
        + timing
        + f"</table><p class='note'>{html.escape(COMPLETENESS_NOTE)}</p>"
        + f"<h2>settings</h2><pre>{html.escape(json.dumps(info, indent=1, default=str))}</pre></body></html>"
    )
