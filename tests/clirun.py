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
