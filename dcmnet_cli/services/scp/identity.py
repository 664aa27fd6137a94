"""Who may associate with ``listen``: the users file, JWT verification, and the identity policy.

PS3.7 D.3.3.7 lets a requestor send a username and passcode, a Kerberos ticket, a SAML assertion or a
JSON Web Token in its A-ASSOCIATE-RQ. ``listen --users FILE`` checks usernames and passcodes against
salted scrypt hashes, ``--jwt-key FILE`` checks JWT signatures (HS256/384/512 with a shared secret,
RS256/384/512 with an RSA public key, both with the standard library only), ``--require-identity``
refuses requests without an identity. Kerberos and SAML are not verified: with a check configured they
are refused, without one they are accepted unverified, as any identity is (and never answered with a
positive response, which would claim a verification that did not happen).

The users file (written by ``dcmnet users add``, mode 0600), one user a line, ``#`` comments::

    NAME:scrypt$N$r$p$SALT$HASH

NAME is the username in UTF-8 (no ``:``, no control characters), SALT (16 random bytes) and HASH (32
bytes of ``hashlib.scrypt(passcode, salt=SALT, n=N, r=r, p=p)``) are base64. The file is read again when
it changes, so ``users add`` needs no restart; a file that cannot be read any more refuses every
passcode (fails closed). Unknown users cost the same scrypt as known ones (no timing oracle), and
digests are compared with :func:`hmac.compare_digest`.

Passcodes and tokens are never logged: verdicts carry the username (as a repr) and the reason in words.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import NamedTuple

from ...errors import InputError
from ...transport.inputfiles import read_limited
from ...ul.items import UserIdentityRQ, UserIdentityType
from ...ul.negotiation import AcceptorPolicy, IdentityVerdict
from .jwt import JWTVerifier, load_jwt_key

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
"""scrypt cost (16 MiB, about 50 ms per check here): paid once per association that sends a passcode."""
MAX_NAME_BYTES = 256
_MAXMEM = 256 << 20
_DUMMY_SALT = b"dcmnet-no-such-user!"


class UsersFileError(InputError):
    """The users file cannot be read or has a malformed line (``listen`` exits 2, ``users add`` too)."""


class PasswordHash(NamedTuple):
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def text(self) -> str:
        salt, digest = (base64.b64encode(v).decode("ascii") for v in (self.salt, self.digest))
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"

    def matches(self, passcode: bytes) -> bool:
        """Constant-time comparison of the passcode's scrypt digest with ours."""
        return hmac.compare_digest(_scrypt(passcode, self.salt, self.n, self.r, self.p, len(self.digest)), self.digest)


def _scrypt(passcode: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(passcode, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAXMEM)


def hash_password(passcode: str) -> PasswordHash:
    salt = os.urandom(16)
    return PasswordHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, _scrypt(passcode.encode("utf-8"), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, 32))


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a username in the file (None when it can)."""
    if not name:
        return "a username cannot be empty"
    if ":" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a username cannot contain ':' or control characters"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"a username is at most {MAX_NAME_BYTES} bytes"
    return None


def parse_hash(text: str) -> PasswordHash | None:
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isascii() and p.isdigit() for p in parts[1:4]):
        return None
    n, r, p = (int(v) for v in parts[1:4])
    if n < 2 or n & (n - 1) or n > 1 << 20 or not 0 < r <= 32 or not 0 < p <= 16:
        return None
    try:
        salt, digest = (base64.b64decode(v, validate=True) for v in parts[4:])
    except ValueError:
        return None
    return PasswordHash(n, r, p, salt, digest) if len(digest) >= 16 else None


def parse_users(text: str, path: str) -> dict[str, PasswordHash]:
    """The users of a users file's text; a malformed line is a UsersFileError naming the line."""
    users: dict[str, PasswordHash] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, hashed = line.rpartition(":")
        parsed = parse_hash(hashed.strip()) if sep else None
        if parsed is None or check_name(name) is not None:
            raise UsersFileError(f"{path}, line {number}: not NAME:scrypt$N$r$p$SALT$HASH (see dcmnet users add --help)")
        users[name] = parsed
    return users


def read_users(path: str) -> dict[str, PasswordHash]:
    try:
        text = read_limited(path, 16 << 20).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsersFileError(f"cannot read the users file {path}: {getattr(error, 'strerror', None) or error}") from None
    return parse_users(text, path)


def shown_name(name: str | None) -> str:
    """A peer's user name for a log line: a repr (control characters escaped), at most 64 characters."""
    if name is None:
        return "None"
    return repr(name[:64]) + ("..." if len(name) > 64 else "")


class UsersFile:
    """The users of ``listen --users``, read again when the file changes (size, mtime, inode)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = self._stat()
        self.users: dict[str, PasswordHash] | None = read_users(path)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def current(self) -> dict[str, PasswordHash] | None:
        """The users now; None when the file changed into something unreadable (every passcode fails).
        Association threads may race to re-read a changed file: each reads it whole, so at worst it is
        read twice (no lock needed; an assignment is atomic)."""
        stamp = self._stat()
        if stamp != self._stamp:
            try:
                users: dict[str, PasswordHash] | None = read_users(self.path)
            except UsersFileError:
                users = None
            self.users, self._stamp = users, stamp
        return self.users

    def verify(self, name: str, passcode: bytes) -> IdentityVerdict:
        users = self.current()
        shown = shown_name(name)
        if users is None:
            return IdentityVerdict(False, f"user {shown} refused: the users file {self.path} cannot be read")
        known = users.get(name)
        if known is None:
            PasswordHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, _DUMMY_SALT, bytes(32)).matches(passcode)  # same cost
            return IdentityVerdict(False, f"unknown user {shown}")
        if not known.matches(passcode):
            return IdentityVerdict(False, f"user {shown} refused: wrong password")
        return IdentityVerdict(True, f"user {shown}")


class IdentityPolicy(NamedTuple):
    """What ``listen`` demands of identities; :meth:`apply` puts it into the negotiation policy."""

    users: UsersFile | None = None
    jwt: JWTVerifier | None = None
    require: bool = False

    def apply(self, policy: AcceptorPolicy) -> AcceptorPolicy:
        check = self.check if self.users is not None or self.jwt is not None else None
        return policy._replace(accept_user_identity=check, require_user_identity=self.require)

    def check(self, identity: UserIdentityRQ) -> IdentityVerdict:
        kind = identity.identity_type
        if kind == UserIdentityType.USERNAME_PASSCODE and self.users is not None:
            return self.users.verify(identity.primary.decode("utf-8", "replace"), identity.secondary)
        if kind == UserIdentityType.JWT and self.jwt is not None:
            return self.jwt.verify(identity.primary)
        if kind == UserIdentityType.USERNAME:
            return IdentityVerdict(False, f"user {shown_name(identity.user)} refused: no password given")
        name = UserIdentityType.NAMES.get(kind, f"type {kind}")
        return IdentityVerdict(False, f"{name} identities are not accepted here")


def identity_policy(users: str | None, jwt_key: str | None, require: bool) -> IdentityPolicy | None:
    """The policy for ``listen``'s options (None when none is given); file errors raise InputError."""
    if users is None and jwt_key is None and not require:
        return None
    return IdentityPolicy(UsersFile(users) if users else None, load_jwt_key(jwt_key) if jwt_key else None, require)


def loose_permissions(path: str) -> bool:
    """True when group or others may read the file (hashes deserve the care of /etc/shadow)."""
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False

