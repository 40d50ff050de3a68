"""A self-contained HTML report: tables, budgets, the gate, and two plots as inline SVG (no scripts, no CDN)."""

from __future__ import annotations

import html
import io

from edgetransfer.bench.config import processes_per_batch
from edgetransfer.bench.gate import GateResult
from edgetransfer.bench.gate_text import gate_lines
from edgetransfer.bench.profiles import budget_line, recommendation_line
from edgetransfer.bench.report import (
    COLUMNS,
    _cell,
    device_gates,
    device_lines,
    device_problems,
    filled,
    measured,
    noisy,
    profile_notes,
    rows,
    title,
)

MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;max-width:1200px}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
.sub{color:#566}.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.75rem;margin:.5rem 0}
th,td{padding:.2rem .3rem;border-bottom:1px solid #e4e6ee;white-space:nowrap}th{background:#f3f4f8;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#137333;font-weight:600}
.fail{color:#b3261e;font-weight:600}.warn{color:#8a5a00}.rec{background:#eef6ee;padding:.6rem 1rem;border-radius:6px}
pre{background:#f6f7fa;padding:.8rem;font-size:.8rem;white-space:pre-wrap;overflow-wrap:anywhere}
.gate .line{display:block;padding-left:6ch;text-indent:-6ch}.plots{display:flex;flex-wrap:wrap;gap:1rem}
.plots figure{margin:0}figcaption{font-size:.8rem;color:#566;max-width:560px}dl{display:grid;
grid-template-columns:max-content auto;gap:.15rem 1rem;font-size:.85rem}dt{color:#566}dd{margin:0}
"""


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG in HTML5


def _log_axis(ax) -> None:
    """A log x axis labelled 0.2, 0.5, 1, 2, 5... in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _colors(names: list[str]) -> dict[str, str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    return {name: palette[i % len(palette)] for i, name in enumerate(dict.fromkeys(names))}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), by rising x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def front_line(points: list[tuple[float, float]], right: float) -> tuple[list[float], list[float]]:
    """The Pareto front as a staircase that runs on to ``right`` (the plot's edge): a line even when the front is one
    point (every model as accurate as the others)."""
    front = pareto_front(points)
    xs, ys = [points[i][0] for i in front], [points[i][1] for i in front]
    return xs + [right], ys + [ys[-1]]


def plot_points(document: dict) -> list[dict]:
    """What the Pareto plots show: one point per model and batch size (p50 latency; top-1 %, or size in MB where
    accuracy was not measured for every model)."""
    results = document["results"]
    with_acc = bool(results) and all(r.get("accuracy") for r in results)
    return [
        {
            "batch": lat["batch"],
            "backend": r["backend"],
            "variant": r["variant"],
            "p50_ms": lat["p50_ms"],
            "y": 100 * r["accuracy"]["top1"] if with_acc else r["model_bytes"] / 1e6,
            "accuracy": with_acc,
        }
        for r in results
        for lat in r["latency"]
    ]


def _accuracy_axis(ax, ys: list[float]) -> None:
    """A top-1 axis around the points, its ticks never above 100 %."""
    from matplotlib.ticker import MaxNLocator

    low, high = min(ys), max(ys)
    pad = max(0.5, 0.1 * (high - low))
    ax.set_ylim(max(0.0, low - pad), high + pad)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    bottom, top = ax.get_ylim()
    ax.set_yticks([t for t in ax.get_yticks() if bottom <= t <= min(top, 100)])


def pareto_plot(document: dict, batch: int) -> str:
    """Latency (p50 at ``batch``) against top-1 (or model size) per backend × variant, with the Pareto front."""
    import matplotlib

    matplotlib.use("svg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    points = [p for p in plot_points(document) if p["batch"] == batch]
    with_acc = points[0]["accuracy"]
    xs, ys = [p["p50_ms"] for p in points], [p["y"] for p in points]
    colors = _colors([p["backend"] for p in points])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    better = list(zip(xs, ys if with_acc else [-y for y in ys], strict=True))  # higher is better: -size
    front = pareto_front(better)
    log = max(xs) / max(min(xs), 1e-9) > 8
    right = max(xs) * (1.6 if log else 1.08)
    fx, fy = front_line(better, right)
    fy = fy if with_acc else [-y for y in fy]
    ax.step(fx, fy, where="post", color="#777", linestyle="--", linewidth=1.2, label="Pareto front", zorder=2)
    for i, (p, x, y) in enumerate(zip(points, xs, ys, strict=True)):
        marker = MARKERS.get(p["variant"], "D")
        ax.scatter([x], [y], s=60, color=colors[p["backend"]], marker=marker, zorder=3, edgecolors="white")
        if i in front:  # only the front is named: the others are told apart by colour and marker
            label = f"{p['backend']} {p['variant']}"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6 + 9 * (front.index(i) % 2)), fontsize=7)
    for name, color in colors.items():
        ax.scatter([], [], color=color, label=name)
    for variant, marker in MARKERS.items():
        if any(p["variant"] == variant for p in points):
            ax.scatter([], [], color="#555", marker=marker, label=variant)
    ax.set_xlabel(f"p50 latency per batch of {batch} (ms)")
    ax.set_xlim(min(xs) / 1.6 if log else min(xs) * 0.9, right)
    if log:
        _log_axis(ax)
    if with_acc:
        ax.set_ylabel("top-1 accuracy (%)")
        _accuracy_axis(ax, ys)
    else:
        ax.set_ylabel("model size (MB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    what = "accuracy" if with_acc else "size (accuracy not measured)"
    ax.set_title(f"latency vs {what}, batch {batch}", fontsize=10)
    return _svg(fig)


def distribution_plot(document: dict, batch: int) -> str:
    """Per-run latency samples of every model at ``batch``: box (quartiles), whiskers 1-99%."""
    import matplotlib

    matplotlib.use("svg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    every = [(r, whose) for r, whose in measured(document) if any(lat["batch"] == batch for lat in r["latency"])]
    results = [r for r, _ in every]
    data, labels = [], []
    for r, whose in every:
        lat = next(lat for lat in r["latency"] if lat["batch"] == batch)
        data.append(lat["samples_ms"])
        where = f" on {whose}" if whose not in (None, "this", "here", "reference") else ""
        labels.append(f"{r['backend']} {r['variant']}" + (" (reference run)" if whose == "reference" else "") + where)
    colors = _colors([r["backend"] for r in results])
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(data) + 1.4))
    box = ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False, patch_artist=True, widths=0.6)
    for patch, r in zip(box["boxes"], results, strict=True):
        patch.set_facecolor(colors[r["backend"]])
        patch.set_alpha(0.45)
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_xlabel(f"latency per batch of {batch} (ms); box: quartiles and median; whiskers: p1 to p99")
    lows, highs = min(min(d) for d in data), max(max(d) for d in data)
    if highs / max(lows, 1e-9) > 8:
        _log_axis(ax)
    ax.grid(alpha=0.3, axis="x")
    ax.invert_yaxis()
    ax.set_title(f"latency distribution, batch {batch}", fontsize=10)
    return _svg(fig)


def pareto_caption(document: dict, batch: int) -> str:
    """What the Pareto plot of ``batch`` shows, in the words of its axes."""
    points = [p for p in plot_points(document) if p["batch"] == batch]
    if not points[0]["accuracy"]:
        return (
            "Each point is one backend × variant; accuracy was not measured for every model, so the plot shows "
            "model size. The dashed line is the Pareto front: the models that no other model beats on both "
            "latency and size."
        )
    text = (
        "Each point is one backend × variant. The dashed line is the Pareto front: the models that no other model "
        "beats on both latency and top-1 accuracy."
    )
    if len({round(p["y"], 6) for p in points}) == 1:
        text += f" Every model has the same top-1 ({points[0]['y']:.2f}%): the front is the fastest alone."
    return text


def _plots(document: dict) -> str:
    if not document["results"]:
        return "<p>No model was measured.</p>"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "<p class=warn>Plots need matplotlib (pip install matplotlib).</p>"
    caption = "The spread of every timed run; a long right whisker (its end is p99) means an unsteady latency."
    figures = []
    for batch in document["settings"]["batches"]:
        pareto = html.escape(pareto_caption(document, batch))
        figures.append(f"<figure>{pareto_plot(document, batch)}<figcaption>{pareto}</figcaption></figure>")
        figures.append(f"<figure>{distribution_plot(document, batch)}<figcaption>{caption}</figcaption></figure>")
    return f"<div class=plots>{''.join(figures)}</div>"


def _table(document: dict) -> str:
    data = rows(document)
    threads = {document["settings"]["threads_resolved"]}
    columns = [
        c for c in filled(COLUMNS, data) if not (c[1] == "threads" and {row["threads"] for row in data} == threads)
    ]
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in columns)
    body = []
    for row in data:
        cells = "".join(
            f"<td{' class=n' if fmt != '{}' else ''}>{html.escape(_cell(fmt, row[key]))}</td>"
            for _, key, fmt in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _list(items: list[str], css: str = "") -> str:
    if not items:
        return ""
    return "<ul>" + "".join(f"<li class='{css}'>{html.escape(i)}</li>" for i in items) + "</ul>"


def to_html(document: dict, gate: GateResult | None = None) -> str:
    """The whole report as one HTML page that opens from disk, offline."""
    e = html.escape
    machine, versions, s = document["machine"], document["versions"], document["settings"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>edgetransfer bench: {e(document['model']['backbone'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Benchmark of {e(document['model']['backbone'])}</h1>",
        f"<p class=sub>{e(document['run'])} · {e(document['created'])} · {e(title(document))}</p>",
    ]
    rec = document.get("recommendation")
    if rec:
        parts.append(f"<p class=rec><b>{e(recommendation_line(rec))}</b></p>")
    gates = ([("", gate)] if gate is not None else []) + [(f" on {name}", g) for name, g in device_gates(document)]
    for where, result in gates:
        lines = []
        for line in gate_lines(result):
            css = "fail" if line.lstrip().startswith(("SLOWER", "gate: FAIL")) else ""
            css = css or ("warn" if "warning:" in line or "cannot compare" in line else "")
            css = css or ("pass" if line.startswith("gate: pass") else "")
            lines.append(f"<span class='line {css}'>{e(line)}</span>")
        parts.append(f"<h2>Regression gate{e(where)}</h2><pre class=gate>{''.join(lines)}</pre>")
    parts += ["<h2>Results</h2>", _table(document), _list(noisy(document), "warn")]
    parts += ["<h2>Plots</h2>", _plots(document)]
    if document.get("profile"):
        p = document["profile"]
        parts.append(
            f"<h2>Profile {e(p['name'])}</h2><p>{e(p['description'])} <span class=sub>({e(p['source'])})</span></p>"
        )
        said = profile_notes(document)
        parts += [_list(said, "warn")] if said else []
        items = "".join(
            f"<li class={'pass' if c['passed'] else 'fail'}>{e(budget_line(c))}</li>" for c in document["budget_checks"]
        )
        parts.append(f"<ul>{items}</ul>")
    problems = [f"skipped {x['backend']} {x['variant']}: {x['reason']}" for x in document["skipped"]]
    problems += [f"failed {x['backend']} {x['variant']}: {x['error']}" for x in document["failed"]]
    problems += [f"unavailable {x['backend']}: {x['reason']}; {x['install']}" for x in document["unavailable"]]
    problems += device_problems(document)
    if problems:
        parts += ["<h2>Not measured</h2>", _list(problems, "warn")]
    ref = document.get("accuracy_reference") or {}
    facts = {
        "CPU": f"{machine['cpu']} ({machine['cores']} usable cores; flags {', '.join(machine['flags']) or 'none'})",
        "platform": machine.get("platform", ""),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "accuracy images": (  # (--no-accuracy read "0 from None": a review)
            f"{document['accuracy_data']['images']} from {document['accuracy_data']['source']}"
            if document["accuracy_data"].get("source")
            else "not measured"
        ),
        "fp32 reference": ref.get("source", "none"),
        "measurement": (
            f"warm-up {s['warmup']} runs and {s['warmup_time']} s; then at least {s['min_runs']} runs and "
            f"{s['min_time']} s per model and batch size, in {s['rounds']} interleaved rounds; "
            + (
                "in one process"
                if not s["isolated"]
                else (
                    "each model in a fresh process"
                    if processes_per_batch(s["rounds"], s.get("processes", 1)) == 1
                    else f"each model in {processes_per_batch(s['rounds'], s['processes'])} fresh processes per batch "
                    "size (--processes)"
                )
                + " (peak RSS is its own, over every batch size measured)"
            )
        ),
    }
    parts.append("<h2>Machine and method</h2><dl>")
    parts += [f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in facts.items()]
    parts.append("</dl>")
    if document.get("devices"):
        parts += ["<h2>Devices (bench --on)</h2>", _list(device_lines(document))]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
