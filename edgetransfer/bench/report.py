"""A bench document as a terminal table, CSV and Markdown (the HTML report is in :mod:`.html`)."""

from __future__ import annotations

import csv
import io

from edgetransfer.bench.gate import GateResult
from edgetransfer.bench.gate_text import gate_lines
from edgetransfer.bench.profiles import batches_note, budget_line, recommendation_line, threads_note
from edgetransfer.bench.stats import noise_problem

COLUMNS = (  # (header, key of a row from rows(), format)
    ("run", "run", "{}"),  # with --reference-run: "this" or "reference"; else empty
    ("backend", "backend", "{}"),
    ("variant", "variant", "{}"),
    ("runs in", "precision", "{}"),
    ("threads", "threads", "{}"),
    ("batch", "batch", "{}"),
    ("top-1 %", "top1", "{:.2f}"),
    ("Δtop-1", "top1_delta", "{:+.2f}"),
    ("top-5 %", "top5", "{:.2f}"),
    ("p50 ms", "p50_ms", "{:.3f}"),
    ("p90 ms", "p90_ms", "{:.3f}"),
    ("p99 ms", "p99_ms", "{:.3f}"),
    ("CV %", "cv_percent", "{:.1f}"),
    ("img/s", "throughput_ips", "{:.0f}"),
    ("async img/s", "async_ips", "{:.0f}"),
    ("load s", "load_s", "{:.2f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("MB", "model_mb", "{:.1f}"),
)


def measured(document: dict) -> list[tuple[dict, str | None]]:
    """Every result with whose it is: "reference" for a reference run's (measured alongside, --reference-run),
    "this" for the run's beside them, None for the run's when there is no reference run; with devices
    (``bench --on``), "here" for this machine's and the device's name for each device's."""
    reference = (document.get("reference") or {}).get("results", [])
    devices = [d for d in document.get("devices") or [] if d.get("document")]
    mine = "here" if devices else "this" if reference else None
    out = [(r, mine) for r in document["results"]] + [(r, "reference") for r in reference]
    for device in devices:
        out += [(r, device["target"]) for r in device["document"]["results"]]
        theirs = (device["document"].get("reference") or {}).get("results", [])
        out += [(r, f"{device['target']} reference") for r in theirs]
    return out


def device_lines(document: dict) -> list[str]:
    """A line per device of ``bench --on``: its CPU, architecture, instruction-set extensions, cores, OS and
    library versions (and the target's notes), or why it was not measured."""
    lines = []
    for d in document.get("devices") or []:
        name = d["target"] if d["target"] == d["address"] else f"{d['target']} ({d['address']})"
        if d.get("error"):
            lines.append(f"device {name}: NOT MEASURED: {d['error']}")
            continue
        info, versions = d.get("device") or {}, d["document"]["versions"]
        shown = ", ".join(
            f"{k} {v}" for k, v in versions.items() if k not in ("onnxruntime_providers", "openvino_build")
        )
        isa = ", ".join(info.get("isa") or []) or "none listed"
        notes = f"; notes: {d['notes']}" if d.get("notes") else ""
        lines.append(
            f"device {name}: {info.get('cpu')}, {info.get('arch')} ({isa}), {info.get('cores')} cores, "
            f"{info.get('os')} ({info.get('kernel')}); {shown}{notes}"
        )
    return lines


def overflow_lines(document: dict, weight_bits: int | None) -> list[str]:
    """A warning per device of ``bench --on`` whose int8 kernels can overflow with the run's 8-bit int8 weights (an
    x86 CPU without VNNI; see :func:`edgetransfer.machine.int8_overflows`). ``weight_bits``: the ONNX int8 model's,
    from its card (None: not recorded, an export from before the option, which wrote 8)."""
    from edgetransfer.machine import int8_overflows

    if weight_bits == 7:
        return []
    lines = []
    for d in document.get("devices") or []:
        info = d.get("device") or {}
        if d.get("error") or not info.get("arch"):
            continue
        int8 = [r for r in (d.get("document") or {}).get("results", []) if r.get("variant") == "int8"]
        if int8 and int8_overflows(set(info.get("isa") or []), info["arch"]):
            lines.append(
                f"warning: {d['target']} is x86 without VNNI: the run's int8 weights have 8 bits, which can overflow "
                "in its int8 kernels and lose accuracy there (compare its int8 top-1); re-export with "
                "--int8-weights 7bit for it"
            )
    return lines


def device_gates(document: dict) -> list[tuple[str, GateResult]]:
    """The gate's result on each device (``bench --on`` with a gate), rebuilt from the document."""
    from edgetransfer.bench.gate import Row

    found = []
    for d in document.get("devices") or []:
        gate = (d.get("document") or {}).get("gate")
        if gate:
            rows = [Row(**{**r, "confirm": tuple(r["confirm"]) if r.get("confirm") else None}) for r in gate["rows"]]
            result = GateResult(gate["mode"], gate["max_regression"], gate["level"], rows, gate["problems"])
            result.warnings, result.baseline = gate["warnings"], gate["baseline"]
            result.machine_factor = gate.get("machine_factor")
            found.append((d["target"], result))
    return found


def rows(document: dict) -> list[dict]:
    """One flat row per (run, backend, variant, batch size): every figure a table or CSV shows."""
    out = []
    classes = len(document["model"].get("labels") or ())
    for r, whose in measured(document):
        acc = r.get("accuracy") or {}
        if classes and (acc.get("k") or 5) >= classes:  # top-5 of five classes or fewer: 100 % whatever the model
            acc = {**acc, "top5": None, "top5_delta_points": None}
        asyncs = {a["batch"]: a["images_per_s"] for a in r.get("async") or []}
        for lat in r["latency"]:
            out.append(
                {
                    "run": whose,
                    "backend": r["backend"],
                    "variant": r["variant"],
                    "precision": r["precision"],
                    "threads": r["threads"],
                    "batch": lat["batch"],
                    "top1": None if acc.get("top1") is None else 100 * acc["top1"],
                    "top1_delta": acc.get("top1_delta_points"),
                    "top5": None if acc.get("top5") is None else 100 * acc["top5"],
                    "top5_delta": acc.get("top5_delta_points"),
                    **{k: lat[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "stdev_ms", "cv_percent")},
                    "runs": lat["runs"],
                    "throughput_ips": lat["throughput_ips"],
                    "async_ips": asyncs.get(lat["batch"]),
                    "load_s": r["load_s"],
                    "first_run_ms": r["first_run_ms"],
                    "peak_rss_mb": r["peak_rss_mb"],
                    "model_mb": r["model_bytes"] / 1e6,
                    "model": r["model"],
                }
            )
    return out


def filled(columns, data: list[dict]) -> list:
    """The columns in which some row has a value (the run column only with a reference run, say)."""
    return [c for c in columns if any(row[c[1]] is not None for row in data)]


def _cell(fmt: str, value) -> str:
    return "-" if value is None else fmt.format(value)


def title(document: dict) -> str:
    s, model = document["settings"], document["model"]
    profile = f", profile {s['profile']}" if s.get("profile") else ""
    reference = (document.get("accuracy_reference") or {}).get("source")
    data = document.get("accuracy_data") or {}
    return (
        f"{model['backbone']} {model['input'][2]}px, {s['threads_resolved']} thread(s)"
        + (" here" if document.get("devices") else "")
        + ", "
        f"batch {','.join(map(str, s['batches']))}{profile}"
        # which images the top-1 column is of (a --data folder, its notes): it was in bench.json alone
        + (
            f"; top-1 on {data['images']} images of {data['source']}"
            if data.get("source") and data.get("images")
            else ""
        )
        + (f"; top-1 Δ in points vs {reference}" if reference else "")
    )


TERMINAL = ("run", "model", "runs in", "batch", "top-1 %", "Δtop-1", "p50 ms", "p90 ms", "p99 ms", "CV %", "img/s")
TERMINAL += ("async img/s", "peak RSS MB", "MB")


def table(document: dict):
    """A rich table of a bench document: the figures that matter most (CSV, Markdown and HTML have them all);
    columns with nothing measured are left out."""
    from rich import box
    from rich.table import Table

    data = rows(document)
    for row in data:
        row["model_name"] = f"{row['backend']} {row['variant']}"
    columns = [("model", "model_name", "{}"), *COLUMNS]
    threads_vary = len({row["threads"] for row in data}) > 1  # a device of bench --on set its own threads
    shown = [c for c in filled(columns, data) if c[0] in TERMINAL or (c[0] == "threads" and threads_vary)]
    from rich.text import Text  # plain text: a folder named 'photos[v2]' lost its '[v2]' as markup; '[/x]' raised

    out = Table(title=Text(title(document)), box=box.SIMPLE_HEAD, pad_edge=False)
    for header, _, fmt in shown:
        out.add_column(header, justify="left" if fmt == "{}" and header != "batch" else "right", no_wrap=True)
    for row in data:
        out.add_row(*(Text(_cell(fmt, row[key])) for _, key, fmt in shown))
    return out


def noisy(document: dict) -> list[str]:
    """A line per measurement too noisy to trust (see :func:`~edgetransfer.bench.stats.noise_problem`)."""
    lines = []
    for r, whose in measured(document):
        for lat in r["latency"]:
            problem = noise_problem(lat)
            if problem:
                name = f"{r['backend']} {r['variant']}" + (" (reference run)" if whose == "reference" else "")
                name += f" on {whose}" if whose not in (None, "this", "here", "reference") else ""
                lines.append(f"noisy: {name} batch {lat['batch']}: {problem}")
    if lines:
        one_thread = document.get("settings", {}).get("threads_resolved") == 1
        lines.append(
            "noisy: close other programs, "
            + ("" if one_thread else "use --threads 1 or fewer threads than cores, ")
            + "or measure longer (--min-time, --rounds)"
        )
    return lines


def device_problems(document: dict) -> list[str]:
    """What each device of ``bench --on`` skipped, failed or could not run, naming the device: a model that failed
    there made the bench exit 2, and no line said why."""
    lines = []
    for entry in document.get("devices") or []:
        doc, on = entry.get("document") or {}, f"on {entry['target']}"
        lines += [f"skipped {s['backend']} {s['variant']} {on}: {s['reason']}" for s in doc.get("skipped", [])]
        lines += [f"FAILED {f['backend']} {f['variant']} {on}: {f['error']}" for f in doc.get("failed", [])]
        for u in doc.get("unavailable", []):
            reason = u["reason"] if u["reason"].startswith(on) else f"{on}: {u['reason']}"
            lines.append(f"unavailable {u['backend']} {reason}" + (f"; {u['install']}" if u.get("install") else ""))
    return lines


def notes(document: dict) -> list[str]:
    """Noisy measurements, skipped, failed and unavailable backends, budget checks and the recommendation, as
    lines."""
    lines = noisy(document)
    lines += [f"skipped {s['backend']} {s['variant']}: {s['reason']}" for s in document["skipped"]]
    lines += [f"FAILED {f['backend']} {f['variant']}: {f['error']}" for f in document["failed"]]
    lines += [f"unavailable {u['backend']}: {u['reason']}; {u['install']}" for u in document["unavailable"]]
    lines += device_problems(document)
    if document.get("profile"):
        p = document["profile"]
        lines.append(f"profile {p['name']} ({p['source']})" + (f": {p['description']}" if p.get("description") else ""))
        lines += [f"  {note}" for note in profile_notes(document)]
        lines += [f"  {budget_line(c)}" for c in document["budget_checks"]]
    if document.get("recommendation"):
        lines.append(recommendation_line(document["recommendation"]))
    return lines


def profile_notes(document: dict) -> list[str]:
    """The notes above a profile's budget lines, alike in the terminal, bench.md and bench.html (the coarse top-1
    note was in bench.md alone: a review): batch sizes or threads other than the profile's, top-1 on too few
    images to see the budget."""
    p = document["profile"]
    said = [batches_note(p, document["results"]), threads_note(p, document.get("settings") or {})]
    return [note for note in said if note] + _coarse_top1(document)


def _coarse_top1(document: dict) -> list[str]:
    """A note where one of the images top-1 was measured on is worth more than the profile's top-1 budget (16
    images: 6.25 points against 1): its PASS means no image was lost, and a smaller loss cannot be seen (as
    export says of its own check)."""
    images = (document.get("accuracy_data") or {}).get("images")
    limits = {  # the checks on the drops measured here (not export's figures, nor a model not measured)
        c["limit"]
        for c in document["budget_checks"]
        if c["budget"] == "max_top1_drop_points" and c["where"] == "vs the fp32 reference"
    }
    if not images or not limits or 100 / images <= min(limits):
        return []
    return [
        f"note: top-1 on {images} images: one image is {100 / images:.2f} points, more than the {min(limits):g}-point "
        "top-1 budget: a PASS means no image lost, and a smaller loss cannot be seen (--data DIR: more images)"
    ]


# the CSV's accuracy columns by unit: "top1" there was percent beside bench.json's fraction of the same name (a review)
UNITS = {"top1": "top1_percent", "top5": "top5_percent", "top1_delta": "top1_delta_points"}
UNITS["top5_delta"] = "top5_delta_points"


def to_csv(document: dict) -> str:
    """The rows as CSV; ``run`` is the run's folder where no reference run or device was measured beside it (the
    column was empty in every row: a new user's trial)."""
    buffer = io.StringIO()
    data = [
        {UNITS.get(k, k): v for k, v in {**row, "run": row["run"] or document["run"]}.items()} for row in rows(document)
    ]
    writer = csv.DictWriter(buffer, fieldnames=list(data[0]) if data else ["backend"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(data)
    return buffer.getvalue()


def to_markdown(document: dict, gate: GateResult | None = None) -> str:
    machine, versions = document["machine"], document["versions"]
    lines = [
        f"# Benchmark: {document['model']['backbone']} ({document['run']})",
        "",
        f"{title(document)}.  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, flags {', '.join(machine['flags']) or 'none'}.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "onnxruntime_providers") + ".",
        "",
    ]
    lines += [f"- {line}" for line in device_lines(document)] + ([""] if document.get("devices") else [])
    data = rows(document)
    columns = filled(COLUMNS, data)
    lines += [
        "| " + " | ".join(h for h, _, _ in columns) + " |",
        "|" + "|".join("---" if fmt == "{}" else "---:" for _, _, fmt in columns) + "|",
    ]
    for row in data:
        lines.append("| " + " | ".join(_cell(fmt, row[key]) for _, key, fmt in columns) + " |")
    extra = notes(document)
    if extra:
        lines += ["", *[f"- {line.strip()}" for line in extra]]
    if gate is not None:
        lines += ["", "```", *gate_lines(gate), "```"]
    for name, result in device_gates(document):
        lines += ["", f"On {name}:", "```", *gate_lines(result), "```"]
    return "\n".join(lines) + "\n"
