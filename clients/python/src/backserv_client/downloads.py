"""Where a job's outputs are saved, and saving one without leaving half a file behind."""

from __future__ import annotations

import mimetypes
import os
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx

from backserv_client.errors import ApiError, ConnectionFailed
from backserv_client.models import Output


def _extension(output: Output) -> str:
    suffix = PurePosixPath(urlsplit(output.url).path).suffix
    return suffix or mimetypes.guess_extension(output.content_type or "") or ""


def names_a_file(destination: str | os.PathLike[str]) -> bool:
    """`out.png` names a file; an existing folder, `out/` or `out` (no extension) a folder."""
    text = os.fspath(destination)
    return not text.endswith(("/", os.sep)) and not Path(text).is_dir() and bool(Path(text).suffix)


def output_paths(job_id: str, outputs: list[Output], destination: str | os.PathLike[str] | None) -> list[Path]:
    if len(outputs) == 1 and destination is not None and names_a_file(destination):
        return [Path(destination)]
    folder = Path(destination) if destination is not None else Path.cwd()
    return [folder / f"{job_id}-{index}{_extension(output)}" for index, output in enumerate(outputs)]


def fetch_to(http: httpx.Client, url: str, path: Path) -> None:
    """Stream `url` into `path` through a temporary file beside it, renamed when whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file, http.stream("GET", url) as response:
            if response.is_error:
                raise ApiError.from_response(response)
            for chunk in response.iter_bytes():
                file.write(chunk)
        os.replace(partial, path)
    except httpx.TransportError as error:
        raise ConnectionFailed(f"Downloading {urlsplit(url).path}: {error!r}") from error
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
