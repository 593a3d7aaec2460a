"""Run a gem-edge command in process, as a shell would see it; or as a server process for the tests' clients."""
from contextlib import contextmanager


def run_main(main, args, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `main(args)`; a normal return is exit 0."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def run_without(package: str, args: list[str]):
    """`gem-run ARGS` in a fresh interpreter in which importing `package` fails, as where an extra is not
    installed: the CompletedProcess (returncode, stdout, stderr)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] == {package!r}: raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from gem_runtime.cli import main\n"
            f"main({list(map(str, args))!r})\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(proc, timeout: float = 60.0) -> bool:
    """Stop a server process the way its users do: SIGTERM, up to `timeout` s for it to exit, then a kill.
    True when it exited on SIGTERM (or had already exited)."""
    import signal
    import subprocess

    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


@contextmanager
def running(args: list[str], ready, what: str, wait_s: float = 60.0):
    """`gem-run ARGS` as a server process: yields the process once `ready()` is true; SIGTERM (then a wait, then
    a kill) at the end. A process that exits before it is ready fails with its stderr."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "gem_runtime.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + wait_s
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited {proc.returncode}: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} was not ready in {wait_s:g} s")
            time.sleep(0.1)
        yield proc
    finally:
        terminate(proc, 60)


@contextmanager
def small_disk(path, size: str):
    """A tmpfs of `size` ("3m") mounted at `path`, unmounted after: a disk that fills up (root's; CI runs as root)."""
    import subprocess

    import pytest

    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small disk here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
