"""What ``dcmnet echo HOST PORT`` no longer builds at start-up (cli/options.py, cli/main.py).

The peer pattern ``[AET@]HOST:PORT`` is compiled at its first use, and short options are matched
without click's failed long-option lookup (which imported difflib). Checked in a fresh interpreter,
after a whole ``echo`` run; the pattern still works where it is needed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers.procs import base_env, free_port, run_dcmnet


def test_echo_host_port_compiles_no_peer_pattern_and_imports_no_difflib() -> None:
    probe = textwrap.dedent(f"""
        import sys
        from dcmnet_cli.cli.main import main
        from dcmnet_cli.cli import options
        try:
            main(["echo", "-q", "127.0.0.1", "{free_port()}"])
        except SystemExit as done:
            print(done.code, options.AET_HOST_PORT._compiled is None, "difflib" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=base_env())
    assert done.stdout.split() == ["4", "True", "False"], done.stderr


def test_the_peer_pattern_still_parses_aet_host_port() -> None:
    code, out, err = run_dcmnet("echo", f"SOMEAE@127.0.0.1:{free_port()}")
    assert code == 4 and "refused" in err, err
    code, out, err = run_dcmnet("echo", "not-a-peer-at-all:")
    assert code != 4 and code != 0, err
