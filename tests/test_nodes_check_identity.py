"""``dcmnet nodes --check`` sends the user identity each node configures (``user``, ``password_env``),
against a ``listen --users --require-identity`` on 127.0.0.1; a node whose password variable is unset is
reported (exit 2), never prompted for and never left hanging."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers.procs import LOOPBACK, base_env, dcmnet_argv, listen_server

PASSWORD = "n0des-check-horse"


def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(dcmnet_argv(*args), capture_output=True, text=True, timeout=30,
                          env={**base_env(), **env}, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def node(name: str, port: int, extra: str = "") -> str:
    return f'[nodes.{name}]\nhost = "{LOOPBACK}"\nport = {port}\n{extra}'


def test_nodes_check_sends_each_nodes_identity(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    done = subprocess.run(dcmnet_argv("users", "add", str(users), "alice"), input=PASSWORD + "\n", text=True,
                          capture_output=True, env=base_env(), timeout=30)
    assert done.returncode == 0, done.stderr
    config = tmp_path / "config.toml"
    env = {"DCMNET_CONFIG": str(config), "NODE_PW": PASSWORD}
    with listen_server("--verify-only", "--users", str(users), "--require-identity") as server:
        config.write_text(node("secure", server.port, 'user = "alice"\npassword_env = "NODE_PW"\n'))
        code, out, err = run("nodes", "--check", env=env)
        assert code == 0, out + err  # the identity was sent and accepted
        assert out.splitlines()[1].split()[4] == "ok", out
        config.write_text(node("secure", server.port, 'user = "alice"\npassword_env = "NODE_PW"\n')
                          + node("unset", server.port, 'user = "alice"\npassword_env = "NODES_TEST_UNSET_PW"\n')
                          + node("anonymous", server.port))
        code, out, err = run("nodes", "--check", "--json", env=env)
        rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
        assert rows["secure"]["status"] == "ok"
        assert "NODES_TEST_UNSET_PW" in rows["unset"]["status"] and "not set" in rows["unset"]["status"]
        assert rows["unset"]["exit_code"] == 2 and rows["anonymous"]["exit_code"] == 5  # identity required
        assert code == 2, out + err
        assert PASSWORD not in out + err
