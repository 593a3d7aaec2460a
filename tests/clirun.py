"""Run a gem-edge command in process, as a shell would see it."""


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
