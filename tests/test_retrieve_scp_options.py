"""``listen --move-destination AET=HOST:PORT`` and config-file nodes as C-MOVE destinations (cli/retrieve_scp_options.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.procs import run_dcmnet

from dcmnet_cli.cli import config
from dcmnet_cli.cli.retrieve_scp_options import destinations
from dcmnet_cli.services.peer import Peer


@pytest.mark.parametrize("value", ["STORESCP", "STORESCP=127.0.0.1", "=127.0.0.1:104", "STORESCP=127.0.0.1:0",
                                   "STORESCP=127.0.0.1:http", "WAY-TOO-LONG-AE-TITLE=127.0.0.1:104"])
def test_a_bad_move_destination_is_a_usage_error(value: str, tmp_path: Path) -> None:
    code, out, err = run_dcmnet("listen", "--move-destination", value, "-od", str(tmp_path), "0")
    assert code == 2, err
    assert "--move-destination" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before anything was set up


def test_destinations_from_the_command_line_and_config_nodes(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[nodes.pacs]\nhost = "10.0.0.5"\nport = 11112\naet = "PACS"\n\n'
                    '[nodes.other]\nhost = "10.0.0.6"\nport = 104\naet = "DEST"\n\n'
                    '[nodes.noaet]\nhost = "10.0.0.7"\nport = 104\n')
    monkeypatch.setenv("DCMNET_CONFIG", str(path))
    monkeypatch.setattr(config, "_cache", {})
    table = destinations({"move_destinations": (("DEST", "127.0.0.1", 11113), ("V6", "::1", 4242))})
    assert table == {"PACS": Peer("10.0.0.5", 11112, "PACS"), "DEST": Peer("127.0.0.1", 11113, "DEST"),
                     "V6": Peer("::1", 4242, "V6")}  # the command line wins; a node without aet is no destination


def test_ipv6_destination_parses(tmp_path: Path) -> None:
    from click import Context, Option

    from dcmnet_cli.cli.retrieve_scp_options import _parse

    option = Option(["--move-destination"])
    assert _parse(Context.__new__(Context), option, ("DEST=[::1]:104", "A=h.example:11112")) == (
        ("DEST", "::1", 104), ("A", "h.example", 11112))
