"""A multipart upload of one ECG (a file, or a WFDB record's header and signal files) and the form's fields,
checked as a client's bytes must be: sizes bounded, names sanitised, numbers parsed or refused with a 400."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from starlette.requests import Request

from ..errors import EcgReadError
from ..readers import EcgRecord, read_ecg
from ..timings import Timings
from .errors import HttpError

MAX_FILES = 16                   # a WFDB record: .hea and its signal files
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
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + 64 * 1024:
        raise HttpError(413, f"upload of {int(length)} bytes is over the {max_bytes} byte limit", "too_large")
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=16)
    except Exception as exc:                                   # noqa: BLE001 - a malformed multipart body
        raise HttpError(400, f"not a multipart form upload: {exc}", "bad_request") from None
    files = [f for f in form.getlist("file") if hasattr(f, "filename")]
    if not files:
        raise HttpError(400, "no ECG in the upload: send it as the multipart field \"file\"", "bad_request")
    if sum(f.size or 0 for f in files) > max_bytes:
        raise HttpError(413, f"upload is over the {max_bytes} byte limit", "too_large")
    folder = tempfile.TemporaryDirectory(prefix="gem-upload-")
    paths = []
    for k, f in enumerate(files):
        name = _SAFE_NAME.sub("_", Path(f.filename or f"ecg{k}").name) or f"ecg{k}"
        path = Path(folder.name) / name
        path.write_bytes(await f.read())
        paths.append(path)
    return Upload(form, folder, paths)


def int_field(value, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HttpError(400, f"{name} is {value!r}, not a whole number", "bad_request") from None
    if not lo <= number <= hi:
        raise HttpError(400, f"{name} is {number}, outside {lo}..{hi}", "bad_request")
    return number


def float_field(value: str, name: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise HttpError(400, f"{name} is {value!r}, not a number", "bad_request") from None
