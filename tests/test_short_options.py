"""Short options go straight to click's short-option match (``cli/main.py``, ``_ShortFirstParser``).

Click tries every ``-x`` as a long option first; the failed lookup builds a NoSuchOption whose spelling
suggestions import :mod:`difflib` on every run that uses ``-q``, ``-v`` or ``-k``. What a user sees must
not change: the same values parsed, the same errors for unknown options, the same suggestions for a
misspelt long option.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers.procs import base_env, free_port, run_dcmnet


def _run_in_process(*args: str) -> tuple[int, list[str]]:
    probe = textwrap.dedent(f"""
        import sys
        from dcmnet_cli.cli.main import main
        try:
            main({list(args)!r})
        except SystemExit as done:
            code = done.code
        print(code, "difflib" in sys.modules, file=sys.stdout)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=base_env())
    code, difflib = done.stdout.split()
    return int(code), [done.stderr, difflib]


def test_short_options_parse_without_difflib() -> None:
    port = str(free_port())  # nothing listens there: exit 4 after every option was parsed
    code, (err, difflib) = _run_in_process("-q", "echo", "-v", "-qv", "-aet", "ME", "-aec", "YOU", "-ta", "2",
                                           "127.0.0.1", port)
    assert code == 4, err
    assert difflib == "False"


def test_short_option_values_are_parsed_as_before() -> None:
    port = str(free_port())
    code, out, err = run_dcmnet("echo", "-vv", "127.0.0.1", port)
    assert code == 4 and "refused" in err
    code, out, err = run_dcmnet("echo", "-qv", "127.0.0.1", port)
    assert code == 4 and "refused" in err
    code, out, err = run_dcmnet("echo", "-aec", "X" * 17, "127.0.0.1", port)  # the value still reaches its check
    assert code == 2 and "-aec" in err, err


def test_unknown_options_still_fail_with_clicks_messages() -> None:
    for bad in ("-x", "-qx"):
        code, out, err = run_dcmnet("echo", bad, "127.0.0.1", "104")
        assert code == 2 and "No such option '-x'" in err, err
    code, out, err = run_dcmnet("echo", "--quite", "127.0.0.1", "104")
    assert code == 2 and "No such option '--quite'" in err and "--quiet" in err, err
