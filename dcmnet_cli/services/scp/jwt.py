"""JSON Web Token verification for ``listen --jwt-key`` (RFC 7519/7515, compact serialisation), stdlib only.

Why no crypto library: HS256/384/512 is :mod:`hmac`; RS256/384/512 *verification* is one modular
exponentiation (``pow``) and a comparison with the whole expected PKCS #1 v1.5 encoding (RFC 8017
§8.2.2, built here, never parsed out of the signature, so the classic padding-parsing forgeries do not
apply). Only public data is involved, so no side channel matters. ES256 and others would need a real
elliptic-curve implementation: they are refused (use the optional ``cryptography`` package in a later
version if a site needs them).

The key file decides the algorithm family, never the token's header (no algorithm confusion): a PEM
``PUBLIC KEY``/``RSA PUBLIC KEY`` allows only RS*, anything else is an HMAC secret (its bytes, a final
newline removed) and allows only HS*; ``alg: none`` is always refused. ``exp`` and ``nbf`` are checked
when present (60 s leeway). The token itself is never logged; the verdict names its ``sub``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, NamedTuple

from ...errors import InputError
from ...transport.inputfiles import read_limited
from ...ul.negotiation import IdentityVerdict

LEEWAY_S = 60
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_DIGEST_INFO = {  # DER DigestInfo prefixes, RFC 8017 §9.2 note 1
    "256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_RSA_OID = bytes.fromhex("2a864886f70d010101")


class JWTKeyError(InputError):
    """The --jwt-key file cannot be read or is not a key we can use (exit 2 at ``listen`` start)."""


class RSAPublicKey(NamedTuple):
    n: int
    e: int


def _der(data: bytes, offset: int, tag: int) -> tuple[bytes, int]:
    """One DER TLV of ``tag`` at ``offset``: (value, offset after it)."""
    if offset + 2 > len(data) or data[offset] != tag:
        raise ValueError("unexpected DER tag")
    length, offset = data[offset + 1], offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or offset + count > len(data):
            raise ValueError("bad DER length")
        length, offset = int.from_bytes(data[offset:offset + count], "big"), offset + count
    if offset + length > len(data):
        raise ValueError("DER value runs past the end")
    return data[offset:offset + length], offset + length


def _rsa_from_pkcs1(der: bytes) -> RSAPublicKey:
    body, _ = _der(der, 0, 0x30)
    n, offset = _der(body, 0, 0x02)
    e, _ = _der(body, offset, 0x02)
    return RSAPublicKey(int.from_bytes(n, "big"), int.from_bytes(e, "big"))


def parse_rsa_public_key(pem: str) -> RSAPublicKey:
    """An RSA public key from PEM: SubjectPublicKeyInfo (``PUBLIC KEY``) or PKCS #1 (``RSA PUBLIC KEY``)."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    if len(lines) < 3 or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise ValueError("not a PEM block")
    der = base64.b64decode("".join(lines[1:-1]), validate=True)
    if "RSA PUBLIC KEY" in lines[0]:
        return _rsa_from_pkcs1(der)
    if "BEGIN PUBLIC KEY" not in lines[0]:
        raise ValueError("not a public key (a PUBLIC KEY or RSA PUBLIC KEY PEM block)")
    spki, _ = _der(der, 0, 0x30)
    algorithm, offset = _der(spki, 0, 0x30)
    oid, _ = _der(algorithm, 0, 0x06)
    if oid != _RSA_OID:
        raise ValueError("only RSA public keys are supported (RS256/RS384/RS512)")
    bits, _ = _der(spki, offset, 0x03)
    return _rsa_from_pkcs1(bits[1:])


def rsa_verify(key: RSAPublicKey, size: str, message: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2) against the fully built expected encoding."""
    k = (key.n.bit_length() + 7) // 8
    if len(signature) != k or k < 128:  # under 1024-bit keys: refuse
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    encoded = pow(s, key.e, key.n).to_bytes(k, "big")
    t = _DIGEST_INFO[size] + _HASHES[size](message).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return hmac.compare_digest(encoded, expected)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class JWTVerifier(NamedTuple):
    """Verifies tokens with one key: an HMAC secret (bytes) or an RSA public key."""

    key: bytes | RSAPublicKey

    def verify(self, token: bytes, now: float | None = None) -> IdentityVerdict:
        try:
            claims = self._claims(token)
        except (ValueError, UnicodeDecodeError) as error:
            return IdentityVerdict(False, f"JWT refused: {error}")
        return self._check_times(claims, time.time() if now is None else now)

    def _claims(self, token: bytes) -> dict[str, Any]:
        parts = token.decode("ascii").strip().split(".")
        if len(parts) != 3:
            raise ValueError("not a compact JWS (three dot-separated parts)")
        header, claims = json.loads(_b64url(parts[0])), json.loads(_b64url(parts[1]))
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("header or claims are not JSON objects")
        alg = str(header.get("alg", ""))
        family, size = alg[:2], alg[2:]
        signed, signature = f"{parts[0]}.{parts[1]}".encode("ascii"), _b64url(parts[2])
        if size not in _HASHES or family not in ("HS", "RS"):
            raise ValueError(f"algorithm {alg!r} not supported")
        if isinstance(self.key, RSAPublicKey):
            good = family == "RS" and rsa_verify(self.key, size, signed, signature)
        else:
            good = family == "HS" and hmac.compare_digest(hmac.new(self.key, signed, _HASHES[size]).digest(), signature)
        if not good:
            raise ValueError(f"bad signature or an {alg} token for the other kind of key")
        return claims

    @staticmethod
    def _check_times(claims: dict[str, Any], now: float) -> IdentityVerdict:
        subject = claims.get("sub", claims.get("preferred_username"))
        who = f"JWT subject {str(subject)[:64]!r}" if subject is not None else "JWT without a subject"
        for name, late in (("exp", True), ("nbf", False)):
            value = claims.get(name)
            if value is None:
                continue
            if not isinstance(value, (int, float)):
                return IdentityVerdict(False, f"{who} refused: {name} is not a number")
            if (late and now > value + LEEWAY_S) or (not late and now < value - LEEWAY_S):
                return IdentityVerdict(False, f"{who} refused: {'expired' if late else 'not valid yet'}")
        return IdentityVerdict(True, who)


def load_jwt_key(path: str) -> JWTVerifier:
    """The verifier for ``--jwt-key FILE``: a PEM RSA public key, or else the file's bytes as an HMAC secret."""
    try:
        data = read_limited(path, 1 << 20)
    except OSError as error:
        raise JWTKeyError(f"cannot read the JWT key {path}: {error.strerror or error}") from None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            return JWTVerifier(parse_rsa_public_key(data.decode("ascii")))
        except (ValueError, UnicodeDecodeError) as error:
            raise JWTKeyError(f"the JWT key {path} is not a usable public key: {error}") from None
    secret = data[:-1] if data.endswith(b"\n") else data
    if len(secret.rstrip(b"\r")) < 32:
        raise JWTKeyError(f"the JWT key {path} is an HMAC secret of {len(secret)} bytes: use at least 32")
    return JWTVerifier(secret.rstrip(b"\r"))
