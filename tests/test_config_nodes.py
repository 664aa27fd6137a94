"""The config file, ``DCMNET_<OPTION>`` variables, ``dcmnet nodes`` and ``dcmnet completion``, as a user
sees them (exit codes, stdout, stderr). Each test writes its own config file and points
``XDG_CONFIG_HOME`` (or ``DCMNET_CONFIG``) at it; every server listens on 127.0.0.1 and is stopped."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from helpers.procs import base_env, dcmnet_argv, free_port, listen_server
from store_helpers import closed_port

README = Path(__file__).resolve().parents[1] / "README.md"


def run(args: list[str], config: Path | None = None, xdg: Path | None = None, timeout: float = 30.0,
        **env: str) -> tuple[int, str, str]:
    environment = base_env()
    if config is not None:
        environment["DCMNET_CONFIG"] = str(config)
    if xdg is not None:
        environment.pop("DCMNET_CONFIG")
        environment["XDG_CONFIG_HOME"] = str(xdg)
    environment.update(env)
    done = subprocess.run(dcmnet_argv(*args), capture_output=True, text=True, timeout=timeout, env=environment,
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def write_config(folder: Path, text: str) -> Path:
    path = folder / "dcmnet" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    write_config(tmp_path, '[nodes.qr]\nhost = "127.0.0.1"\nport = 11112\naetitle = "QRSCP"\n')
    code, out, err = run(["echo", "qr"], xdg=tmp_path)
    assert code == 2 and "unknown key 'aetitle'" in err and "did you mean aet?" in err, err
    write_config(tmp_path, '[defaults]\nretrys = 2\n')
    code, _, err = run(["echo", "127.0.0.1", "1"], xdg=tmp_path)
    assert code == 2 and "did you mean retries?" in err
    write_config(tmp_path, '[node.qr]\nhost = "x"\n')
    code, _, err = run(["echo", "127.0.0.1", "1"], xdg=tmp_path)
    assert code == 2 and "did you mean nodes?" in err


def _called_ae(args: list[str], config: Path, **env: str) -> str:
    code, out, err = run(["echo", "--json", "127.0.0.1", str(closed_port()), *args], config=config, **env)
    assert code == 4, err
    return json.loads(out)["called_ae"]


def test_precedence_command_line_environment_config_default(tmp_path: Path) -> None:
    empty = write_config(tmp_path / "empty", "")
    assert _called_ae([], empty) == "ANY-SCP"
    config = write_config(tmp_path, '[defaults]\ncalled_aet = "FROMCFG"\nconnect_timeout = 2\n')
    assert _called_ae([], config) == "FROMCFG"
    assert _called_ae([], config, DCMNET_CALLED_AET="FROMENV") == "FROMENV"
    assert _called_ae(["-aec", "FROMCLI"], config, DCMNET_CALLED_AET="FROMENV") == "FROMCLI"
    # a node's own aet is more specific than [defaults] called_aet
    config = write_config(tmp_path, f'[defaults]\ncalled_aet = "FROMCFG"\n'
                                    f'[nodes.n]\nhost = "127.0.0.1"\nport = {closed_port()}\naet = "NODEAE"\n')
    code, out, err = run(["echo", "--json", "n"], config=config)
    assert code == 4 and json.loads(out)["called_ae"] == "NODEAE", err


def test_defaults_for_output_options(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[defaults]\nquiet = true\n")
    code, out, err = run(["store", "127.0.0.1", str(closed_port()), str(tmp_path)], config=config)
    assert code == 3 and "stored 0 of" not in err  # quiet from the config: no summary line
    code, out, err = run(["store", "127.0.0.1", str(closed_port()), str(tmp_path)], config=config, DCMNET_QUIET="0")
    assert code == 3 and "stored 0 of 1 files" in err, err  # the environment wins over the config


def test_every_option_has_an_environment_variable(tmp_path: Path) -> None:
    code, out, err = run(["store", "127.0.0.1", str(closed_port()), str(tmp_path)], DCMNET_PATTERN="*.nothing")
    assert code == 3 and "nothing matches --pattern" in err  # DCMNET_PATTERN took effect
    code, out, err = run(["echo", "127.0.0.1", str(closed_port())], DCMNET_QUIET="1")
    assert code == 4 and "refused" in err  # errors still shown
    code, _, err = run(["store", "127.0.0.1", "1", str(tmp_path)], DCMNET_RETRIES="lots")
    assert code == 2 and "retries" in err.lower()


def test_unknown_node_lists_the_known_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[nodes.pacs]\nhost = "127.0.0.1"\nport = 104\n'
                                    '[nodes.qr]\nhost = "127.0.0.1"\nport = 11112\n')
    code, _, err = run(["echo", "pcas"], config=config)
    assert code == 2 and "no node 'pcas'" in err and "known nodes: pacs, qr" in err


def test_nodes_lists_and_checks_with_per_node_calling_aet(tmp_path: Path) -> None:
    port = free_port()
    with listen_server("--allow-calling-aet", "NODEAET", port=port):
        config = write_config(tmp_path, f'[nodes.good]\nhost = "127.0.0.1"\nport = {port}\ncalling_aet = "NODEAET"\n'
                                        f'[nodes.wrongae]\nhost = "127.0.0.1"\nport = {port}\naet = "X"\n'
                                        f'[nodes.down]\nhost = "127.0.0.1"\nport = {closed_port()}\n')
        code, out, err = run(["nodes"], config=config)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split() == ["NAME", "AE", "HOST:PORT", "TLS"]
        assert [line.split()[0] for line in lines[1:]] == ["down", "good", "wrongae"]
        assert f"127.0.0.1:{port}" in lines[2] and "X" in lines[3].split()
        code, out, err = run(["nodes", "--check"], config=config)
        rows = {line.split()[0]: line for line in out.splitlines()[1:]}
        assert "ok" in rows["good"].split() and re.search(r"\d+\.\d ms$", rows["good"])
        assert "refused" in rows["down"] and "rejected" in rows["wrongae"]
        assert code == 5, out + err  # the worst: rejected (5) beats cannot connect (4)
        code, out, err = run(["echo", "good"], config=config)  # the node's calling AE is used by echo too
        assert code == 0, err
        code, out, err = run(["echo", "-aet", "OTHER", "good"], config=config)  # -aet wins
        assert code == 5


def test_nodes_without_config_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(["nodes"], config=tmp_path / "none.toml")
    assert code == 2 and "no nodes" in err


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F _dcmnet dcmnet"),
                                           ("zsh", "#compdef dcmnet"), ("fish", "complete -c dcmnet")])
def test_completion_scripts(shell: str, marker: str) -> None:
    code, out, err = run(["completion", shell])
    assert code == 0 and marker in out, err
    assert "nodes --names" in out and "completion --keywords" in out
    import shutil

    checker = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}[shell]
    if shutil.which(checker[0]):  # the script is valid syntax for its shell
        done = subprocess.run([*checker, "/dev/stdin"], input=out, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr


def test_completion_helpers_give_nodes_and_keywords(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[nodes.pacs]\nhost = "h"\nport = 104\n[nodes.qr]\nhost = "h"\nport = 1\n')
    code, out, _ = run(["nodes", "--names"], config=config)
    assert code == 0 and out.split() == ["pacs", "qr"]
    code, out, _ = run(["completion", "--keywords", "PatientNa"])
    assert code == 0 and "PatientName" in out.split()


def test_bash_completes_node_names_and_keywords(tmp_path: Path) -> None:
    """The bash script itself, driven the way bash drives it (COMP_WORDS), with dcmnet on PATH."""
    import os
    import shutil
    import sys

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    config = write_config(tmp_path, '[nodes.pacs]\nhost = "h"\nport = 104\n')
    _, script, _ = run(["completion", "bash"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dcmnet").write_text(f"#!/bin/sh\nexec {sys.executable} -m dcmnet_cli \"$@\"\n")
    (bin_dir / "dcmnet").chmod(0o755)
    driver = script + '\nCOMP_WORDS=(dcmnet echo pa); COMP_CWORD=2; _dcmnet; echo "${COMPREPLY[@]}"\n' \
        'COMP_WORDS=(dcmnet find -k PatientNa); COMP_CWORD=3; _dcmnet; echo "${COMPREPLY[@]}"\n'
    env = dict(base_env(), DCMNET_CONFIG=str(config), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, timeout=30, env=env)
    first, second = done.stdout.splitlines()[:2]
    assert first.split() == ["pacs"], done.stderr
    assert "PatientName" in second.split()


def test_readme_options_table_matches_the_code() -> None:
    importlib.import_module("dcmnet_cli.cli.main")  # registers the commands the table lists
    from dcmnet_cli.cli.config import environment_table

    text = README.read_text()
    match = re.search(r"<!-- options-table -->\n(.*?)\n<!-- /options-table -->", text, re.S)
    assert match, "README has no options table between <!-- options-table --> markers"
    assert match.group(1).strip() == environment_table().strip(), \
        "README options table is out of date: paste python -c 'from dcmnet_cli.cli.config import environment_table; " \
        "print(environment_table())'"


def test_new_commands_in_help_and_man_pages() -> None:
    code, out, _ = run(["--help"])
    assert code == 0 and re.search(r"^\s+nodes\s", out, re.M) and re.search(r"^\s+completion\s", out, re.M)
    from dcmnet_cli.cli.docs import man_pages

    pages = man_pages()
    assert "dcmnet-nodes.1" in pages and "dcmnet-completion.1" in pages
