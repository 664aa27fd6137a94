"""``dcmnet users add|remove FILE NAME``: the users file of ``listen --users`` (salted scrypt hashes).

The file is rewritten whole into a temporary file beside it (mode 0600) and renamed over it, so a
listener reading it (it re-reads on change) never sees half a file, and a crash leaves the old one.
"""

from __future__ import annotations

import os
import sys
import tempfile

import click

from ...transport.inputfiles import read_limited
from ..app import App
from ..exitcodes import ExitCode
from ..options import SectionedCommand

MAX_PASSWORD_BYTES = 0xFFFF - 6 - 256
"""What fits in a User Identity sub-item beside the longest username (PS3.7 D.3.3.7)."""


def _read_password(name: str) -> str:
    """Twice at a prompt on a terminal; else one line from stdin (its line ending removed)."""
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != first:
            raise click.UsageError("the two passwords differ: nothing written")
        password = first
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise click.UsageError("an empty password: nothing written")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise click.UsageError(f"a password of more than {MAX_PASSWORD_BYTES} bytes cannot be sent: nothing written")
    return password


def _existing_lines(path: str, name: str) -> tuple[list[str], bool]:
    """The file's lines without ``name``'s (checked first: a malformed file is not silently rewritten)."""
    from ...services.scp.identity import parse_users

    if not os.path.exists(path):
        return [], False
    try:
        text = read_limited(path, 16 << 20).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise click.UsageError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    parse_users(text, path)
    kept = [line for line in text.splitlines() if line.rpartition(":")[0] != name or line.lstrip().startswith("#")]
    return kept, len(kept) != len(text.splitlines())


def _write(path: str, lines: list[str]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=".users-", dir=folder)  # mkstemp creates it 0600
    except OSError as error:
        raise click.UsageError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException as error:
        os.unlink(temporary)
        if isinstance(error, OSError):
            raise click.UsageError(f"cannot write {path}: {error.strerror or error}") from None
        raise


@click.command("users", cls=SectionedCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("action", type=click.Choice(["add", "remove"]))
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name")
@click.pass_obj
def command(app: App | None, action: str, file: str, name: str) -> int:
    """Add (or replace) or remove user NAME in FILE, the users file of 'dcmnet listen --users FILE'.

    add reads the password twice at a prompt on a terminal, else one line from stdin
    (printf '%s\\n' "$PW" | dcmnet users add users.txt alice). FILE is created if missing, always
    with mode 0600, and replaced atomically. One user a line, '#' starts a comment:

    \b
      NAME:scrypt$N$r$p$SALT$HASH

    SALT and HASH are base64: HASH = scrypt(password, SALT, n=N, r=r, p=p), 32 bytes (Python's
    hashlib.scrypt). A listener re-reads the file when it changes.
    """
    from ...services.scp.identity import UsersFileError, check_name, hash_password

    problem = check_name(name)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="NAME")
    try:
        lines, found = _existing_lines(file, name)
    except UsersFileError as error:
        raise click.UsageError(f"{error}: fix or remove the line first (nothing written)") from None
    if action == "remove":
        if not found:
            raise click.UsageError(f"no user {name!r} in {file}")
        _write(file, lines)
        _say(app, f"removed {name} from {file}")
        return ExitCode.SUCCESS
    lines.append(f"{name}:{hash_password(_read_password(name)).text()}")
    _write(file, lines)
    _say(app, f"{'replaced' if found else 'added'} {name} in {file}")
    return ExitCode.SUCCESS


def _say(app: App | None, text: str) -> None:
    if app is not None:
        app.info(text)
    else:
        print(text, file=sys.stderr)
