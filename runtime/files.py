"""Files that are never seen half-written, and their hashes: one helper each, used everywhere.

    atomic_write(path, b"...")          # a reader sees the old file or the whole new one
    sha256_file(path)                   # streamed, bounded memory
"""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Callable

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """An OSError for a full disk or quota: the machine's state, neither our bug nor the caller's mistake."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL

# Patient data (ECGs, reports) is written 0600 in 0700 folders: readable by the service's user only.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; where a folder cannot be opened, there is nothing to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes | str | Callable[[Path], None], *, durable: bool = True,
                 mode: int | None = None) -> Path:
    """Write `data` (bytes, text as UTF-8, or a function that writes the temporary path) to `path`: a temporary
    file in the same folder, fsync'ed (file and folder) when `durable`, renamed into place. On any failure the
    temporary file is removed and the error goes on; `path` keeps its old content. `mode` sets the file's
    permission bits (e.g. PRIVATE_FILE_MODE) before the rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if callable(data):
            data(tmp)
            if durable:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        else:
            raw = data.encode("utf-8") if isinstance(data, str) else data
            with open(tmp, "wb") as f:
                f.write(raw)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:     # a read-only folder: the temporary file was never made
            pass
        raise
    if durable:
        fsync_folder(path.parent)
    return path


def sha256_file(path: Path | str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()
