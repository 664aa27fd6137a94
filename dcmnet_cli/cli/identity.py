"""The SCU identity options (``--user``, ``--password-env``, ``--jwt-env``, ``--saml``, ``--kerberos``,
``--identity-response``) turned into the :class:`~..services.scu.identity.Identity` a peer carries.

Where a password comes from, first found wins: ``--password-env VAR`` (or ``DCMNET_PASSWORD_ENV``, or
``password_env`` in ``[defaults]``), the node's ``password_env`` (when the user is the node's), a prompt
when stdin is a terminal; else the user name goes alone (identity type 1). Secrets are read here and
handed on as bytes; no message built here ever contains one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..transport.inputfiles import read_limited
from ..services.scu.identity import Identity, IdentityError
from ..ul.items import UserIdentityType

_KINDS = ("user", "jwt_env", "saml", "kerberos")


def _env_secret(var: str, what: str) -> bytes:
    value = os.environ.get(var)
    if value is None:
        raise click.UsageError(f"{what}: the environment variable {var} is not set")
    if not value:
        raise click.UsageError(f"{what}: the environment variable {var} is empty")
    return value.encode("utf-8")


def _file_secret(path: str, what: str) -> bytes:
    try:
        data = read_limited(path, 0xFFFF)  # the field's length is two bytes
    except OSError as error:
        raise click.UsageError(f"{what}: cannot read {path}: {error.strerror or error}") from None
    if not data:
        raise click.UsageError(f"{what}: {path} is empty")
    return data


def _password(options: dict[str, Any], node: dict[str, Any], user: str, where: str) -> bytes | None:
    var = options.get("password_env")
    if var:
        return _env_secret(var, "--password-env")
    if node.get("password_env") and node.get("user") in (None, user):
        return _env_secret(node["password_env"], "the node's password_env")
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        try:
            typed = getpass.getpass(f"Password for {user} at {where}: ")
        except EOFError:
            typed = ""
        return typed.encode("utf-8") or None
    return None


def identity_from(options: dict[str, Any], node: dict[str, Any], where: str) -> Identity | None:
    """The identity of this run, or None; conflicting or unusable options are usage errors (exit 2)."""
    user = options.get("user") or node.get("user")
    given = [name for name in _KINDS if (user if name == "user" else options.get(name))]
    if len(given) > 1:
        raise click.UsageError(f"give one identity: --{given[0].replace('_', '-')} or --{given[1].replace('_', '-')}")
    if options.get("password_env") and not user:
        raise click.UsageError("--password-env needs --user NAME")
    response = bool(options.get("identity_response"))
    if not given:
        if response:
            raise click.UsageError("--identity-response needs an identity: --user, --jwt-env, --saml or --kerberos")
        return None
    try:
        if user:
            password = _password(options, node, user, where)
            kind = UserIdentityType.USERNAME_PASSCODE if password else UserIdentityType.USERNAME
            return Identity.build(kind, user.encode("utf-8"), password or b"", response)
        if options.get("jwt_env"):
            return Identity.build(UserIdentityType.JWT, _env_secret(options["jwt_env"], "--jwt-env").strip(), b"", response)
        if options.get("saml"):
            return Identity.build(UserIdentityType.SAML, _file_secret(options["saml"], "--saml"), b"", response)
        return Identity.build(UserIdentityType.KERBEROS, _file_secret(options["kerberos"], "--kerberos"), b"", response)
    except IdentityError as error:
        raise click.UsageError(str(error)) from None
