"""GPU throughput: the bare diffusers loop against the whole system, in one run.

On a CUDA host (an H200; the default type takes well under 5 minutes there):

    python bench/gpu.py                       # text-to-image, SD-1.5-sized UNet, 512x512, 20 steps
    python bench/gpu.py --type image_to_image # or image_upscale, video_creation, face_swap
    python bench/gpu.py --smoke               # CPU, tiny models, 64x64, 4 steps: what the tests run

What it runs, in this order, each in processes of its own:

1. The model folder, built once and kept in --models-dir (var/bench-gpu-models/): on
   CUDA an SD-1.5-sized pipeline (UNet 320-640-1280-1280, VAE 128-256-512-512, a
   12-layer CLIP text encoder) with RANDOM weights, saved in fp16; nothing is
   downloaded. The images are noise; the work per image is Stable Diffusion 1.5's.
   With --smoke, and for the non-default types, the tiny demo models
   (generation.demo_models), said as "model: tiny".
2. The bare loop: the pipeline loaded as a worker loads it (generation.models_cache,
   with its warm-up), its run()/run_batch() called on validated params in a loop, 2
   calls of warm-up, then J jobs timed, each call until the device is done. The outputs'
   PNG/MP4 encoding is not timed (the worker does it on its finishing thread while the
   next call computes); --bare-encode times it too. One subprocess per variant, so each
   starts with a fresh CUDA context:
     eager-b1, eager-bN          GENERATION_CUDA_GRAPHS=0 GENERATION_CHANNELS_LAST=0
                                 GENERATION_TORCH_COMPILE=0: the plain diffusers pipeline
     optimized-b1, optimized-bN  the defaults: the worker's optimizations as shipped
   N is the batch size the worker uses (generation.acceleration.dynamic_batch_size(), or
   --batch). The eager-b1 process also counts one job's FLOPs (torch's FlopCounterMode;
   in eager mode only, as CUDA-graph replays are invisible to it), from which every
   variant's achieved TFLOP/s and its share of --peak-tflops follow.
3. The system, embedded: `manage.py serve` (API, in-process broker, worker, SQLite) with
   DYNAMIC_BATCH_SIZE=1 and =N. After a warm-up, J jobs are queued by one POST
   /api/v1/tasks/batch while --pollers clients GET each job every --poll-interval and
   --streamers clients follow jobs' Server-Sent Events, as real clients would. jobs/s
   runs from the first job's submitted_at to the last one's completed_at (the jobs' own
   timestamps). The worker logs each pipeline call's seconds ("pipeline call",
   LOG_FORMAT=json); their median is set against the bare loop's for the same batch.
4. The system as a fleet (bench/fleet.py: uvicorn, Postgres, Redis, one rundramatiq),
   with --fleet, or when DATABASE_URL and BROKER_URL are set and reachable.

GPU busy: this process reads NVML's utilization every 50 ms and averages the readings
inside each measured span (a bare loop's timed calls; a system run's first submit to
last completion). NVML's figure is the share of its sample period (1/6 s to 1 s,
depending on the GPU) in which a kernel was running: not how much of the GPU the
kernels used, and a span's first readings include some time from before it. Peak GPU
memory is NVML's used memory, all processes together.

Targets (image_creation): optimized-b1 / eager-b1 >= 2; system-b1 / optimized-b1 and
system-bN / optimized-bN >= 0.95; system-bN (and optimized-bN) / eager-b1 >= 5; the
worker's median pipeline call <= 1.05 x the bare loop's; GPU busy >= 95% while jobs
wait. Other types: optimized / eager >= 0.95 (no regression), system / optimized >= 0.9.
A missed target is printed as "TARGET MISSED" and is not an error; the exit status is
non-zero only when a job did not succeed or a step failed. --smoke judges nothing.

Everything measured is written as JSON to --out (var/bench-gpu.json); each process's
log goes to the folder beside it (var/bench-gpu-logs/).

This process only orchestrates, samples the GPU and runs the HTTP clients: torch,
diffusers and Django are imported by the subprocesses (and by bench/fleet.py, for the
fleet). Needs Python, torch, numpy, Pillow, requests and the project's dependencies;
pynvml (nvidia-ml-py) for the GPU figures, scikit-image for face_swap's photo.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

# The gpu_*.py modules beside this file, and bench/fleet.py, however this file is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_cases import TYPES, SkipCase, build_case
from gpu_children import child_main, run_child
from gpu_clients import check_jobs, measure_system
from gpu_env import EAGER_ENV, Environments
from gpu_processes import ROOT, Server, StepFailed, reachable, run_manage
from gpu_report import describe, label, ratios, spread, table
from gpu_sampler import GpuSampler

SERVER_START_TIMEOUT_S = 300


class Bench:
    """One run of the bench: its steps in order, each step's failure recorded while the
    others still run, and the report they fill in."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.smoke = options.smoke
        self.case = build_case(options)
        self.out = Path(options.out)
        self.logs = self.out.parent / f"{self.out.stem}-logs"
        self.models_dir = Path(options.models_dir).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
        # The environment as given, before bench/fleet.py adds its defaults to it.
        self.envs = Environments(
            dict(os.environ),
            work=self.work,
            model_env=self.case.model_env,
            smoke=self.smoke,
            worker_process=options.worker_process,
        )
        self.sampler = GpuSampler(enabled=not self.smoke)
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.report: dict[str, Any] = {
            "bench": "bench/gpu.py",
            "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "smoke": self.smoke,
            "type": self.case.task_type,
            "description": self.case.description,
            "arguments": {key: value for key, value in vars(options).items() if key not in ("child", "spec")},
            "peak_tflops": options.peak_tflops,
            "bare": {},
            "system": {},
            "fleet": None,
        }
        self.host: dict[str, Any] = {}
        self.batch = 1

    # Steps

    def run(self) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.sampler.start()
        started = time.monotonic()
        try:
            self.step("probe", self.probe)
            if not self.errors:
                self.step("model", self.prepare_model)
            if not self.errors:
                if not self.options.skip_bare:
                    self.step("bare", self.bare_all)
                if not self.options.skip_system:
                    self.step("system", self.system_all)
                if self.fleet_wanted():
                    self.step("fleet", self.fleet_all)
                else:
                    print("fleet: skipped (no Postgres/Redis)", flush=True)
        except KeyboardInterrupt:
            self.errors.append("interrupted")
        finally:
            self.sampler.stop()
            shutil.rmtree(self.work, ignore_errors=True)
        self.report["elapsed_s"] = round(time.monotonic() - started, 1)
        self.finish()
        return 1 if self.errors else 0

    def step(self, name: str, work: Callable[[], None]) -> None:
        try:
            work()
        # Any failure of a step is reported and the others still run: the JSON is written.
        except Exception as error:
            message = f"{name}: {type(error).__name__}: {error}"
            print(f"ERROR {message}", flush=True)
            self.errors.append(message)

    def probe(self) -> None:
        self.host = run_child(
            "probe", {}, env=self.envs.child("probe"), log=self.logs / "probe.log", work_dir=self.work
        )
        self.host["nvml_gpu_name"] = self.sampler.name
        self.report["host"] = self.host
        if not self.smoke and not str(self.host["device"]).startswith("cuda"):
            raise StepFailed("no CUDA device here (torch sees none); run with --smoke for the CPU check")
        if self.case.batchable:
            if self.options.batch:
                self.batch, source = self.options.batch, "--batch"
            else:
                self.batch, source = int(self.host["batch_size"]), self.host["batch_size_source"]
            self.report["batch_size"] = {"n": self.batch, "source": source}
            if not source.startswith(("--batch", "generation.acceleration")):
                self.notes.append(source)
        gpu = self.host.get("gpu_name") or self.sampler.name or "no GPU"
        print(
            f"host: {gpu}, {self.host['cpu_count']} CPUs, torch {self.host['torch']}"
            f" (CUDA {self.host['cuda']}), python {self.host['python']}, device {self.host['device']}",
            flush=True,
        )

    def prepare_model(self) -> None:
        case = self.case
        if case.model_folder is None:
            self.report["model"] = {"kind": "none", "path": None}
            return
        path = self.models_dir / case.model_folder
        info: dict[str, Any] = {"kind": case.model, "path": str(path)}
        if (path / "model_index.json").exists():
            info["built_s"] = None
            print(f"model: {case.model} at {path} (cached)", flush=True)
        else:
            print(f"model: building {case.model} at {path} ...", flush=True)
            built = run_child(
                "build",
                {"model": case.model, "dir": str(self.models_dir)},
                env=self.envs.child("build"),
                log=self.logs / "build.log",
                work_dir=self.work,
            )
            info["built_s"] = built["seconds"]
            print(f"model: built in {built['seconds']:.1f}s", flush=True)
        if case.images_per_job > 1:
            self.notes.append(f"images/s counts frames: {case.images_per_job} a job")
        if case.model == "tiny" and not self.smoke:
            self.notes.append(f"model: tiny ({case.model_folder}): GPU figures of a tiny model are launch-bound")
        self.envs.model_path = path
        self.report["model"] = info

    def variants(self) -> list[tuple[str, int, dict[str, str]]]:
        """(name, batch, env) of each bare variant, eager first."""
        found = [("eager-b1", 1, EAGER_ENV), ("optimized-b1", 1, {})]
        if self.case.batchable:
            found += [("eager-bN", self.batch, EAGER_ENV), ("optimized-bN", self.batch, {})]
        return found

    def jobs_for(self, batch: int) -> int:
        jobs_b1, jobs_bn = self.case.jobs_b1, self.case.jobs_bn
        if self.options.jobs:
            counts = [int(part) for part in self.options.jobs.split(",")]
            jobs_b1, jobs_bn = counts[0], counts[-1]
        if batch == 1:
            return jobs_b1
        # Whole batches only: a smaller last call would be a shape the warm-up never saw.
        return max(batch, math.ceil(jobs_bn / batch) * batch)

    def bare_all(self) -> None:
        for name, batch, toggles in self.variants():
            self.step(name, lambda name=name, batch=batch, toggles=toggles: self.bare(name, batch, toggles))

    def bare(self, name: str, batch: int, toggles: dict[str, str]) -> None:
        jobs = self.jobs_for(batch)
        spec = {
            "task_type": self.case.task_type,
            "batch": batch,
            "warmup": self.options.warmup,
            "params": [self.case.params(index) for index in range(jobs)],
            "count_flops": name == "eager-b1",
            "encode": self.options.bare_encode,
        }
        print(f"bare {label(name, batch)}: {jobs} jobs ...", flush=True)
        # The batch size a worker timed at this batch runs with (the system's runs use the
        # same): the load's warm-up captures the shapes timed here, and the choices that
        # follow from the batch size (channels-last) are the same as the worker's.
        env = self.envs.child(name, DYNAMIC_BATCH_SIZE=str(batch), **toggles)
        result = run_child("bare", spec, env=env, log=self.logs / f"bare-{name}.log", work_dir=self.work)
        if "flops_per_call" in result:
            images = result["flops_jobs"] * self.case.images_per_job
            self.report["flops_per_image"] = result["flops_per_call"] / images if images else None
        result["call_s"] = spread(result["call_s"])
        self.add_rates(result, jobs)
        self.report["bare"][name] = {"variant": name, "env": toggles, **result}
        print(f"  {describe(self.report['bare'][name])}", flush=True)

    def add_rates(self, result: dict[str, Any], jobs: int) -> None:
        seconds = result.get("seconds")
        rate = jobs / seconds if seconds else None
        result["jobs_per_s"] = rate
        result["images_per_s"] = rate * self.case.images_per_job if rate else None
        result["gpu_busy_pct"] = self.sampler.busy(result.get("span"))
        result["gpu_memory_peak_mb"] = self.sampler.memory_peak_mb(result.get("span"))
        flops = self.report.get("flops_per_image")
        result["tflops"] = flops * result["images_per_s"] / 1e12 if flops and result["images_per_s"] else None
        on_gpu = not self.smoke and result["tflops"] is not None
        result["peak_share"] = result["tflops"] / self.options.peak_tflops if on_gpu else None

    def system_all(self) -> None:
        template = self.work / "template"
        env = self.envs.child("template")
        # One database with the bench's token, copied for each server: each run starts
        # from an empty queue without paying for the migrations again.
        run_manage(["migrate", "--noinput"], env, self.logs / "migrate.log")
        token_output = run_manage(
            ["create_api_token", "bench", "--staff", "--name", "bench"], env, self.logs / "token.log"
        )
        token = token_output.strip().splitlines()[-1]
        batches = [1, self.batch] if self.case.batchable else [1]
        for batch in batches:
            name = "system-b1" if batch == 1 else "system-bN"
            self.step(name, lambda name=name, batch=batch: self.system(name, batch, template, token))

    def system(self, name: str, batch: int, template: Path, token: str) -> None:
        var_dir = self.work / name
        shutil.copytree(template, var_dir)
        # STATIC_ROOT's default: WhiteNoise warns at startup when it is missing.
        (var_dir / "static").mkdir(exist_ok=True)
        print(f"{label(name, batch)}: starting manage.py serve ...", flush=True)
        server = Server(self.envs.server(name, batch), self.logs / f"{name}.log")
        try:
            began = time.monotonic()
            server.wait_healthy(SERVER_START_TIMEOUT_S)
            start_s = time.monotonic() - began
            result = self.measure(server.base_url, token, batch, server.log)
            result["start_s"] = round(start_s, 2)
        finally:
            server.stop()
        self.report["system"][name] = {"variant": name, "batch": batch, "log": str(server.log), **result}
        check_jobs(name, result)
        print(f"  {describe(self.report['system'][name])}", flush=True)

    def measure(self, base_url: str, token: str, batch: int, log: Path) -> dict[str, Any]:
        jobs = self.jobs_for(batch)
        result = measure_system(
            base_url,
            token,
            self.case,
            batch=batch,
            jobs=jobs,
            log=log,
            pollers=self.options.pollers or jobs,
            streamers=self.options.streamers if self.options.streamers is not None else (1 if self.smoke else 4),
            interval=self.options.poll_interval,
        )
        if result["pipeline_calls"] is None:
            self.notes.append(f"no 'pipeline call' lines in {log}: the worker's per-call figures are null")
        self.add_rates(result, jobs)
        return result

    def fleet_wanted(self) -> bool:
        if self.options.fleet:
            return True
        urls = [self.envs.base.get("DATABASE_URL", ""), self.envs.base.get("BROKER_URL", "")]
        return all(urls) and all(reachable(url) for url in urls)

    def fleet_all(self) -> None:
        self.report["fleet"] = {}
        batches = [1, self.batch] if self.case.batchable else [1]
        for batch in batches:
            name = "fleet-b1" if batch == 1 else "fleet-bN"
            self.step(name, lambda name=name, batch=batch: self.fleet(name, batch))
        if self.report["fleet"]:
            self.notes.append("fleet: its first job comes after bench/fleet.py's own warm-up job")
        else:
            self.report["fleet"] = None

    def fleet(self, name: str, batch: int) -> None:
        from fleet import Fleet, setup_django

        setup_django()
        worker_env = self.envs.fleet_worker(name, batch)
        print(f"{label(name, batch)}: starting the fleet ...", flush=True)
        with Fleet(worker_env=worker_env) as fleet:
            token = fleet.session.headers["Authorization"].split()[-1]
            worker_log = fleet.processes[-1].log
            result = self.measure(fleet.base_url, token, batch, worker_log)
        self.report["fleet"][name] = {"variant": name, "batch": batch, "log": str(worker_log), **result}
        check_jobs(name, result)
        print(f"  {describe(result)}", flush=True)

    def finish(self) -> None:
        report = self.report
        if self.sampler.note:
            self.notes.append(self.sampler.note)
        report["gpu"] = self.sampler.summary()
        report["ratios"] = ratios(report, self.case, smoke=self.smoke, gpu_sampled=self.sampler.available)
        missed = [item for item in report["ratios"] if item["met"] is False]
        report["targets_missed"] = [item["name"] for item in missed]
        report["errors"] = self.errors
        report["notes"] = self.notes
        report["ok"] = not self.errors
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print()
        print(table(report, self.case, smoke=self.smoke, batch=self.batch, notes=self.notes))
        print(f"JSON: {self.out}   logs: {self.logs}   {report['elapsed_s']:.0f}s in all")
        if self.errors:
            print(f"FAILED: {len(self.errors)} error(s): " + "; ".join(error.splitlines()[0] for error in self.errors))


# Command line ------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="CPU, tiny model, 64px, 4 steps, few jobs (the tests' run)"
    )
    parser.add_argument("--type", choices=TYPES, default="image_creation")
    parser.add_argument("--size", type=int, help="image side in pixels (512; smoke 64; upscale: the output's)")
    parser.add_argument("--steps", type=int, help="denoising steps (20; smoke 4)")
    parser.add_argument("--jobs", help="timed jobs: J for both, or J1,JN (16,32; smoke 4,8)")
    parser.add_argument("--batch", type=int, help="N: the batched variants' batch (default: the worker's own)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before a bare loop's timing")
    parser.add_argument(
        "--bare-encode",
        action="store_true",
        help="encode each output (PNG/MP4) inside the bare loop's timed calls; by default it is left undone, as"
        " the worker does it on its finishing thread while the next call computes",
    )
    parser.add_argument("--pollers", type=int, help="status-polling clients (one per job; smoke 4)")
    parser.add_argument("--streamers", type=int, help="Server-Sent Events clients (4; smoke 1)")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="seconds between a poller's reads")
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--skip-system", action="store_true")
    parser.add_argument("--fleet", action="store_true", help="also the fleet (Postgres, Redis: bench/fleet.py)")
    parser.add_argument(
        "--worker-process",
        choices=("auto", "on", "off"),
        default="auto",
        help="GENERATION_WORKER_PROCESS for the server: its GPU worker in a child process (auto: on with CUDA)",
    )
    parser.add_argument("--out", default=str(ROOT / "var" / "bench-gpu.json"))
    parser.add_argument("--models-dir", default=str(ROOT / "var" / "bench-gpu-models"))
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the GPU's dense bf16 rate (H200: 790)")
    parser.add_argument("--child", choices=("probe", "build", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.smoke and options.pollers is None:
        options.pollers = 4
    return options


def main() -> None:
    options = parse_arguments()
    if options.child:
        child_main(options.child, Path(options.spec))
        return
    try:
        bench = Bench(options)
    except SkipCase as reason:
        print(reason)
        return
    # Terminated (a test's timeout, a CI job cancelled): unwind as from Ctrl-C, so the
    # servers and bare loops this bench started are stopped on the way out.
    signal.signal(signal.SIGTERM, interrupt)
    sys.exit(bench.run())


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
