"""Run a command's `main(argv)` in-process, as a test sees it: (exit code, stdout, stderr)."""

from __future__ import annotations


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out, cap.err
