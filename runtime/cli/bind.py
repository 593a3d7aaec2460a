"""What a service needs before its model loads: the port it listens on and the folder it writes, each refused in
one line (exit 2) instead of a traceback after the load. Found so: a port in use gave dicom-listen a traceback,
and serve printed its address, then uvicorn's own error, then exited 3; an --out that cannot be made a traceback."""
from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from ..errors import GemEdgeError


def check_port(host: str, port: int) -> None:
    """That host:port (IPv4 or IPv6 by the address) can be listened on now, for a server that binds its own socket
    (uvicorn, pynetdicom). Handing uvicorn a socket bound here was tried: a 300 kB body refused with 413 on a
    kept-alive connection then reached the client as a reset on its first try (uvicorn's own socket: 413 every
    time), so the port is only checked."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        socket.create_server((host, port), family=family).close()
    except OSError as e:
        why = os.strerror(e.errno) if e.errno and not isinstance(e, socket.gaierror) else (e.strerror or str(e))
        busy = f" (another service holds port {port}?)" if e.errno == errno.EADDRINUSE else ""
        raise GemEdgeError(f"cannot listen on {host}:{port}: {why}{busy}") from None


def writable_folder(path: Path, flag: str, mode: int = 0o700) -> Path:
    """`path` made (with its parents) and written to once, or one line naming the flag and why not."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise GemEdgeError(f"{flag} {path}: cannot be written ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise GemEdgeError(f"{flag} {path}: cannot be written (permission denied)")
    return path
