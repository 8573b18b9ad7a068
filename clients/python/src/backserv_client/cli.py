"""`backserv`: the command line over Client.

Results go to stdout (paths, ids, `--json` bodies), so they can be piped; progress,
messages and errors go to stderr. Exit status: 0 done; 1 the job ended FAILURE, TIMEOUT
or REVOKED; 2 a bad command line; 3 the API refused the request or could not be
reached; 4 `wait --timeout` ran out first; 130 interrupted (`run` cancels its job
first).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from backserv_client import display
from backserv_client._version import __version__
from backserv_client.client import Client
from backserv_client.errors import ApiError, ConnectionFailed
from backserv_client.models import Job
from backserv_client.params import ParamError, build_params, with_local_images
from backserv_client.progress import follow

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMED_OUT = 4
EXIT_INTERRUPTED = 130

Command = Callable[[Client, argparse.Namespace, Console], int]


def _connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    # On the main parser and on each subcommand, so `--url` works before or after the
    # command; SUPPRESS keeps a subcommand from overwriting a value given before it.
    default = None if defaults else argparse.SUPPRESS
    parser.add_argument("--url", default=default, help="the server (default: $BACKSERV_URL or http://127.0.0.1:8000)")
    parser.add_argument("--token", default=default, help="your API token (default: $BACKSERV_TOKEN)")


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_type", help="e.g. image_creation, image_to_image, image_upscale")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a param; VALUE is JSON where it parses (steps=4 is a number), else a string; "
        "an image param may name a local file, uploaded first",
    )
    parser.add_argument("--json-params", metavar="JSON", help="params as a JSON object (-p pairs override it)")
    parser.add_argument("--priority", type=int, help="0-10 (default 5)")
    parser.add_argument("--webhook", metavar="URL", help="POST the finished job there (signed)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backserv", description="Run and manage Back.Serv jobs.")
    parser.add_argument("--version", action="version", version=f"backserv-client {__version__}")
    _connection_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Command, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _connection_options(sub, defaults=False)
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", command_run, "submit a job, show its progress, download its outputs")
    _job_options(run)
    run.add_argument("-o", "--output", metavar="PATH", help="a file for one output, else a folder (default: .)")
    _job_options(command("submit", command_submit, "submit a job and print its id"))
    status = command("status", command_status, "show a job")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="print the job as the API returns it")
    wait = command("wait", command_wait, "follow a job until it finishes")
    wait.add_argument("job_id")
    wait.add_argument("--timeout", type=float, metavar="SECONDS")
    command("cancel", command_cancel, "cancel a job").add_argument("job_id")
    command("retry", command_retry, "queue a failed, timed-out or cancelled job again").add_argument("job_id")
    listing = command("list", command_list, "list your jobs, newest first")
    listing.add_argument("--state", help="PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, TIMEOUT or REVOKED")
    listing.add_argument("--task-type")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    download = command("download", command_download, "download a finished job's outputs")
    download.add_argument("job_id")
    download.add_argument("-o", "--output", metavar="DIR", help="a folder (default: .), or a file for one output")
    command("upload", command_upload, "upload an image and print its upload:<id> reference").add_argument("file")
    types = command("task-types", command_task_types, "list the task types this server runs")
    types.add_argument("--json", action="store_true")
    usage = command("usage", command_usage, "your jobs and GPU time over a period")
    usage.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD")
    usage.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD")
    usage.add_argument("--user", help="another user's usage (staff)")
    usage.add_argument("--json", action="store_true")
    return parser


def _job_params(args: argparse.Namespace) -> dict[str, object]:
    return with_local_images(build_params(args.param, args.json_params))


def _submit(client: Client, args: argparse.Namespace) -> Job:
    return client.submit(args.task_type, _job_params(args), priority=args.priority, webhook=args.webhook)


def _report_end(job: Job, console: Console) -> int:
    if job.succeeded:
        return EXIT_OK
    reason = f" {job.error}" if job.error else ""
    console.print(f"[red]{job.state}[/]{escape(reason)}", highlight=False)
    return EXIT_JOB_FAILED


def _print_paths(paths: list[Path]) -> None:
    for path in paths:
        print(path)


def command_run(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = _submit(client, args)
    try:
        console.print(f"submitted {job.id}", highlight=False)
        job = follow(client, job, console)
    except KeyboardInterrupt:
        return _cancel_interrupted(client, job.id, console)
    status = _report_end(job, console)
    if status == EXIT_OK:
        _print_paths(client.download(job, args.output))
    return status


def _cancel_interrupted(client: Client, job_id: str, console: Console) -> int:
    console.print(f"interrupted: cancelling {job_id}", highlight=False)
    try:
        job = client.cancel(job_id)
    except ApiError as error:
        # Finished meanwhile (409): nothing left to cancel.
        console.print(f"not cancelled: {escape(error.detail)}", highlight=False)
    else:
        console.print(f"{job.state}{' (stops within one step)' if job.cancel_requested else ''}", highlight=False)
    return EXIT_INTERRUPTED


def command_submit(client: Client, args: argparse.Namespace, console: Console) -> int:
    print(_submit(client, args).id)
    return EXIT_OK


def command_status(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = client.get(args.job_id)
    if args.json:
        display.print_json(job.raw)
    else:
        Console().print(display.job_table(job))
    return EXIT_OK


def command_wait(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = client.get(args.job_id)
    if not job.finished:
        job = follow(client, job, console, timeout=args.timeout)
    print(f"{job.id} {job.state}")
    return _report_end(job, console)


def command_cancel(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = client.cancel(args.job_id)
    print(f"{job.id} {job.state}{' cancel_requested' if job.cancel_requested else ''}")
    return EXIT_OK


def command_retry(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = client.retry(args.job_id)
    print(f"{job.id} {job.state}")
    return EXIT_OK


def command_list(client: Client, args: argparse.Namespace, console: Console) -> int:
    jobs = client.list_jobs(state=args.state, task_type=args.task_type, limit=args.limit)
    if args.json:
        display.print_json([job.raw for job in jobs])
    else:
        Console().print(display.jobs_table(jobs))
    return EXIT_OK


def command_download(client: Client, args: argparse.Namespace, console: Console) -> int:
    job = client.get(args.job_id)
    if not job.succeeded:
        console.print(f"{job.id} is {job.state}: it has no outputs to download", highlight=False)
        return EXIT_JOB_FAILED
    _print_paths(client.download(job, args.output))
    return EXIT_OK


def command_upload(client: Client, args: argparse.Namespace, console: Console) -> int:
    print(client.upload(args.file).reference)
    return EXIT_OK


def command_task_types(client: Client, args: argparse.Namespace, console: Console) -> int:
    task_types = client.task_types()
    if args.json:
        display.print_json({"task_types": [task_type.raw for task_type in task_types]})
    else:
        Console().print(display.task_types_table(task_types))
    return EXIT_OK


def command_usage(client: Client, args: argparse.Namespace, console: Console) -> int:
    usage = client.usage(date_from=args.date_from, date_to=args.date_to, user=args.user)
    if args.json:
        display.print_json(usage.raw)
    else:
        display.print_usage(Console(), usage)
    return EXIT_OK


def _print_api_error(console: Console, error: ApiError) -> None:
    console.print(f"[red]error:[/] {escape(f'{error.status} {error.code}: {error.detail}')}", highlight=False)
    for field, messages in error.fields.items():
        if f"{field}:" not in error.detail or len(error.fields) > 1:
            console.print(escape(f"  {field}: {' '.join(messages)}"), highlight=False)
    if error.status == 401:
        console.print("  (set BACKSERV_TOKEN or pass --token)", highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    errors = Console(stderr=True)
    try:
        with Client(url=args.url, token=args.token) as client:
            return args.handler(client, args, errors)
    except ParamError as error:
        parser.error(str(error))
    except BrokenPipeError:
        # Piped into `head` and cut short: not an error of ours, and nothing to tell.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        errors.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return EXIT_USAGE
    except ApiError as error:
        _print_api_error(errors, error)
    except ConnectionFailed as error:
        errors.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
    except TimeoutError as error:
        errors.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        return EXIT_TIMED_OUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_API_ERROR


def entry_point() -> None:
    sys.exit(main())
