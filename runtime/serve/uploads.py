"""A multipart upload of one ECG (a file, or a WFDB record's header and signal files) and the form's fields,
checked as a client's bytes must be: sizes bounded, names sanitised, numbers parsed or refused with a 400."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import EcgReadError
from ..files import PRIVATE_FILE_MODE, is_disk_full
from ..readers import EcgRecord, read_ecg
from ..timings import Timings
from .errors import HttpError, disk_full

MAX_FILES = 16                   # a WFDB record: .hea and its signal files
MAX_NAME = 128                   # characters of a kept file name (a file system allows 255 bytes)
MAX_SUFFIX = 16                  # characters of its extension kept when a long name is cut
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class Upload:
    """The files of one multipart request, written under a temporary folder with their (sanitised) names."""

    def __init__(self, form, folder: tempfile.TemporaryDirectory, paths: list[Path]):
        self._form, self._folder, self.paths = form, folder, paths
        self.source = ", ".join(p.name for p in paths)

    def text(self, name: str) -> str:
        value = self._form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def ecg_path(self) -> Path:
        """The WFDB header if one came, else the one file."""
        headers = [p for p in self.paths if p.suffix.lower() == ".hea"]
        return headers[0] if headers else self.paths[0]

    def read(self, fs: float | None, max_bytes: int, timings: Timings) -> EcgRecord:
        """read_ecg on the upload; a refusal names the file as uploaded, not our temporary folder."""
        try:
            with timings.request(), timings.stage("read"):
                return read_ecg(self.ecg_path(), fs=fs, max_bytes=max_bytes)
        except EcgReadError as exc:
            raise HttpError(422, str(exc).replace(self._folder.name + "/", ""), "unreadable_ecg") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._folder.cleanup()


async def read_form(request: Request, max_bytes: int) -> Upload:
    """The request's multipart form, its files written 0600 under a fresh 0700 folder. The body itself is
    bounded as it arrives (guard.py: 413, 408); here the files' total is checked exactly."""
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=16)
    except HttpError:                                          # the body's bound, from guard.BoundedBody
        raise
    except Exception as exc:                                   # noqa: BLE001 - a malformed multipart body
        if is_disk_full(exc):                                  # its parts spooled to a full disk: not the client's
            raise disk_full(exc) from None
        raise HttpError(400, f"not a multipart form upload: {exc}", "bad_request") from None
    files = [f for f in form.getlist("file") if hasattr(f, "filename")]
    if not files:
        raise HttpError(400, "no ECG in the upload: send it as the multipart field \"file\"", "bad_request")
    if sum(f.size or 0 for f in files) > max_bytes:
        raise HttpError(413, f"upload is over the {max_bytes} byte limit", "too_large")
    names = [safe_name(f.filename, k) for k, f in enumerate(files)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise HttpError(400, f"two uploaded files are both named {twice[0]!r} (as kept here)", "bad_request")
    folder = tempfile.TemporaryDirectory(prefix="gem-upload-")          # 0700
    paths = [Path(folder.name) / name for name in names]
    try:
        for f, path in zip(files, paths):
            await run_in_threadpool(_write_private, f.file, path)
    except BaseException as exc:
        folder.cleanup()
        if is_disk_full(exc):
            raise disk_full(exc) from None
        raise
    return Upload(form, folder, paths)


def safe_name(filename: str | None, k: int) -> str:
    """A client's file name as a plain name in our folder: its last component, characters outside
    [A-Za-z0-9._-] as "_", no leading dot (so never "." or ".."), at most MAX_NAME characters (its extension
    kept, which the readers look at); `ecg<k>` when nothing is left."""
    name = _SAFE_NAME.sub("_", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    if len(name) > MAX_NAME:
        suffix = Path(name).suffix[:MAX_SUFFIX]
        name = name[:MAX_NAME - len(suffix)] + suffix
    return name or f"ecg{k}"


def _write_private(source, path: Path) -> None:
    source.seek(0)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE), "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def int_field(value, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        if isinstance(value, (bool, float)):        # JSON's true is not 1, nor is 3.7 three
            raise TypeError(value)
        number = int(value)
    except (TypeError, ValueError):
        raise HttpError(400, f"{name} is {str(value)[:40]!r}, not a whole number", "bad_request") from None
    if not lo <= number <= hi:
        raise HttpError(400, f"{name} is {number}, outside {lo}..{hi}", "bad_request")
    return number


def bool_field(value, name: str, default: bool = False) -> bool:
    """A form's flag: "true"/"1"/"yes" or "false"/"0"/"no" (absent: `default`); anything else is a 400."""
    word = "" if value is None else str(value).strip().lower()
    if word == "":
        return default
    if word in ("false", "0", "no"):
        return False
    if word in ("true", "1", "yes"):
        return True
    raise HttpError(400, f"{name} is {str(value)[:40]!r}, not true or false", "bad_request")


def float_field(value: str, name: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise HttpError(400, f"{name} is {value!r}, not a number", "bad_request") from None
