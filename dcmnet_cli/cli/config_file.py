"""Reading the config file (``~/.config/dcmnet/config.toml``) without click: its path, the TOML, and the checks
of its sections and ``[nodes.NAME]`` keys. :mod:`.config` adds the ``[defaults]`` check (which needs every
command's options, so click) and click's error type; the fast path reads nodes through here and leaves a
file with ``[defaults]`` to click.
"""

from __future__ import annotations

import os
from ..ul.typenames import Any

from .values import UsageProblem

MAX_CONFIG_BYTES = 1 << 20

NODE_KEYS = ("host", "port", "aet", "calling_aet", "tls", "tls_ca", "tls_cert", "tls_key", "tls_key_password_env",
             "tls_server_name", "tls_no_verify", "user", "password_env")
"""Keys of a ``[nodes.NAME]`` table: where the node is, its AE title, our AE title towards it, its TLS, and
the user identity to present (``user``, and ``password_env``: the name of the variable with its password)."""

SECTIONS = ("nodes", "defaults")

def config_path() -> str:
    """$DCMNET_CONFIG, else $XDG_CONFIG_HOME/dcmnet/config.toml, else ~/.config/dcmnet/config.toml
    (os.path, not pathlib: pathlib costs ~3 ms of start-up)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.environ.get("DCMNET_CONFIG") or os.path.join(base, "dcmnet", "config.toml")


def unknown(key: str, where: str, known: Any, path: str) -> UsageProblem:
    """A key no option or node setting has, with the closest known one."""
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    hint = f": did you mean {close[0]}?" if close else f" (known: {', '.join(sorted(known))})"
    return UsageProblem(f"{path}: unknown key {key!r} in {where}{hint}", bad=False)


def read(cache: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The parsed config file with its sections and nodes checked ([defaults] keys not), or None when there
    is none; kept in ``cache`` (by path) when given. Raises UsageProblem (exit 2)."""
    path = config_path()
    if cache is not None and path in cache:
        return cache[path]
    if not os.path.exists(path):
        return None
    import tomllib

    from ..transport.inputfiles import read_limited

    try:
        config = tomllib.loads(read_limited(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except OSError as error:
        raise UsageProblem(f"cannot read {path}: {error.strerror or error}", bad=False) from None
    except UnicodeDecodeError:
        raise UsageProblem(f"cannot read {path}: not UTF-8 text", bad=False) from None
    except tomllib.TOMLDecodeError as error:
        raise UsageProblem(f"cannot read {path}: {error}", bad=False) from None
    for key, value in config.items():
        if key not in SECTIONS:
            raise unknown(key, "the top level", SECTIONS, path)
        if not isinstance(value, dict):
            raise UsageProblem(f"{path}: [{key}] must be a table", bad=False)
    for name, node in config.get("nodes", {}).items():
        if not isinstance(node, dict):
            raise UsageProblem(f"{path}: nodes.{name} must be a table ([nodes.{name}] with host and port)", bad=False)
        for key in node:
            if key not in NODE_KEYS:
                raise unknown(key, f"[nodes.{name}]", NODE_KEYS, path)
    if cache is not None:
        cache[path] = config
    return config


def nodes() -> dict[str, dict[str, Any]]:
    config = read()
    return dict(config.get("nodes", {})) if config else {}
