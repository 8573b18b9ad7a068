"""What the bench reports: the figures made of raw timings (spreads, the worker's logged
pipeline calls), the ratios against their targets, and the table printed at the end."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from gpu_cases import Case

# What each variant's ratio in the table is taken against.
BASELINES = {
    "eager-b1": "eager-b1",
    "optimized-b1": "eager-b1",
    "eager-bN": "eager-b1",
    "optimized-bN": "eager-b1",
    "system-b1": "optimized-b1",
    "system-bN": "optimized-bN",
    "fleet-b1": "optimized-b1",
    "fleet-bN": "optimized-bN",
}


def spread(values: list[float], *, digits: int = 4) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def pipeline_calls(log: Path, offset: int) -> dict[str, Any] | None:
    """The worker's "pipeline call" log lines written after `offset`, by batch size."""
    by_batch: dict[int, list[float]] = {}
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("message") != "pipeline call" or "pipeline_s" not in record:
            continue
        by_batch.setdefault(int(record.get("batch", 1)), []).append(float(record["pipeline_s"]))
    if not by_batch:
        return None
    return {
        str(size): {"count": len(values), "s": spread(values), "total_s": round(sum(values), 4)}
        for size, values in sorted(by_batch.items())
    }


def ratios(report: dict[str, Any], case: Case, *, smoke: bool, gpu_sampled: bool) -> list[dict[str, Any]]:
    """Each ratio against its target (and the pipeline-call and GPU-busy figures), with
    `met` None where it is not judged: on a smoke run, or with nothing to judge."""
    bare, system, fleet = report["bare"], report["system"], report["fleet"] or {}
    runs = {**bare, **system, **fleet}
    found: list[dict[str, Any]] = []

    def rate(name: str) -> float | None:
        return (runs.get(name) or {}).get("jobs_per_s")

    def add(name: str, value: float | None, op: str, target: float, judged: bool = True) -> None:
        met = None
        if value is not None and judged and not smoke:
            met = value >= target if op == ">=" else value <= target
        found.append({"name": name, "value": value, "op": op, "target": target, "met": met})

    def ratio(top: str, bottom: str, target: float) -> None:
        high, low = rate(top), rate(bottom)
        add(f"{top} / {bottom} jobs/s", high / low if high and low else None, ">=", target)

    if case.task_type == "image_creation":
        ratio("optimized-b1", "eager-b1", 2.0)
        ratio("system-b1", "optimized-b1", 0.95)
        ratio("system-bN", "optimized-bN", 0.95)
        ratio("system-bN", "eager-b1", 5.0)
        ratio("optimized-bN", "eager-b1", 5.0)
        if fleet:
            ratio("fleet-b1", "optimized-b1", 0.95)
            ratio("fleet-bN", "optimized-bN", 0.95)
    else:
        ratio("optimized-b1", "eager-b1", 0.95)
        ratio("system-b1", "optimized-b1", 0.9)
        if fleet:
            ratio("fleet-b1", "optimized-b1", 0.9)
    for name, run in {**system, **fleet}.items():
        batch = run["batch"]
        bare_run = bare.get("optimized-b1" if batch == 1 else "optimized-bN") or {}
        calls = (run.get("pipeline_calls") or {}).get(str(batch))
        bare_call = (bare_run.get("call_s") or {}).get("median")
        value = calls["s"]["median"] / bare_call if calls and bare_call else None
        add(f"{name} pipeline call / bare call (median, batch {batch})", value, "<=", 1.05)
    if not gpu_sampled:
        return found
    # GPU busy is judged where jobs wait for a real-size model; a tiny one is launch-bound.
    judged = case.model == "sd15"
    for name, run in runs.items():
        if not name.startswith("eager"):
            add(f"{name} GPU busy %", run.get("gpu_busy_pct"), ">=", 95.0, judged=judged)
    return found


def describe(run: dict[str, Any]) -> str:
    """A run's figures on one line, as each run is printed when it is done."""
    rate = run.get("jobs_per_s")
    text = f"{rate:.2f} jobs/s" if rate else "no rate"
    if run.get("call_s"):
        text += f", call {run['call_s']['median']:.3f}s median"
    calls = (run.get("pipeline_calls") or {}).get(str(run.get("batch", 1)))
    if calls:
        text += f", pipeline call {calls['s']['median']:.3f}s median (worker log)"
    if run.get("pipeline_calls"):
        split = ", ".join(f"{entry['count']}x{size}" for size, entry in run["pipeline_calls"].items())
        text += f" (calls: {split} jobs)"
    if run.get("pipeline_share") is not None:
        text += f", {run['pipeline_share']:.0%} of the span in pipeline calls"
    if run.get("first_job_s") is not None:
        text += f", first job {run['first_job_s']:.2f}s"
    if run.get("gpu_busy_pct") is not None:
        text += f", GPU busy {run['gpu_busy_pct']:.1f}%"
    return text


def table(report: dict[str, Any], case: Case, *, smoke: bool, batch: int, notes: list[str]) -> str:
    host = report.get("host") or {}
    model = report.get("model") or {}
    where = f" ({model['path']})" if model.get("path") else ""
    lines = [f"{case.task_type}: {case.description}; model: {model.get('kind')}{where}"]
    gpu = host.get("gpu_name") or host.get("nvml_gpu_name") or "no GPU"
    lines.append(f"host: {gpu}, {host.get('cpu_count')} CPUs, torch {host.get('torch')}, device {host.get('device')}")
    if "batch_size" in report:
        lines.append(f"batch N = {report['batch_size']['n']} ({report['batch_size']['source']})")
    flops = report.get("flops_per_image")
    if flops:
        unit, scale = ("GFLOP", 1e9) if flops >= 1e9 else ("MFLOP", 1e6)
        lines.append(f"FLOPs per image: {flops / scale:,.1f} {unit} (eager, FlopCounterMode)")
    lines.append("")
    lines.append(
        f"{'variant':<15}{'jobs':>5}{'jobs/s':>9}{'images/s':>10}{'ratio':>7}  {'vs':<13}"
        f"{'call s med':>11}{'first job':>10}{'GPU busy':>9}{'TFLOP/s':>9}{'of peak':>9}"
    )
    runs = {**report["bare"], **report["system"], **(report["fleet"] or {})}
    for name, run in runs.items():
        lines.append(row(name, run, runs.get(BASELINES[name]) or {}, batch))
    lines.append("(call s med: the bare loop's calls; for the system, the worker's logged pipeline calls)")
    lines.append("")
    lines.append(f"{'ratio':<62}{'measured':>9}  {'target':<9}verdict")
    for item in report["ratios"]:
        verdict = {True: "ok", False: "TARGET MISSED", None: "not judged" if item["value"] is not None else "n/a"}
        if smoke and item["value"] is not None:
            verdict[None] = "not judged (smoke)"
        name = item["name"].replace("-bN", f"-b{batch}")
        lines.append(
            f"{name:<62}{number(item['value'], 9, 2)}  {item['op']} {item['target']:<6g}{verdict[item['met']]}"
        )
    for note in notes:
        lines.append(f"note: {note}")
    if report.get("targets_missed"):
        lines.append(f"target missed: {len(report['targets_missed'])} of the judged figures (see above)")
    return "\n".join(lines)


def row(name: str, run: dict[str, Any], base: dict[str, Any], batch: int) -> str:
    rate, base_rate = run.get("jobs_per_s"), base.get("jobs_per_s")
    # The bare loop's own calls; for the system, the worker's logged pipeline calls.
    calls = (run.get("pipeline_calls") or {}).get(str(run.get("batch", 1)))
    call = (run.get("call_s") or {}).get("median") or (calls["s"]["median"] if calls else None)
    tflops = run.get("tflops")
    share = run["peak_share"] * 100 if run.get("peak_share") is not None else None
    cells = [
        f"{label(name, run.get('batch', 1)):<15}{run.get('jobs', 0):>5}",
        number(rate, 9, 2),
        number(run.get("images_per_s"), 10, 2),
        number(rate / base_rate if rate and base_rate else None, 7, 2),
        f"  {label(BASELINES[name], batch):<13}",
        number(call, 11, 3),
        number(run.get("first_job_s"), 10, 2),
        number(run.get("gpu_busy_pct"), 9, 1),
        number(tflops, 9, 1 if (tflops or 0) >= 10 else 3),
        number(share, 8, 1) + ("%" if share is not None else " "),
    ]
    return "".join(cells)


def label(name: str, batch: int) -> str:
    return name.replace("-bN", f"-b{batch}")


def number(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"
