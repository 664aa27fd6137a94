"""User identity negotiation (PS3.7 D.3.3.7) without a network: the sub-item bytes against the standard's
tables, the acceptor's decisions, the users file, JWT verification, and redaction everywhere a request
can be shown (repr, -v, --debug traces)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from dcmnet_cli.errors import PDUDecodeError
from dcmnet_cli.services.scp.identity import (
    IdentityPolicy,
    UsersFile,
    UsersFileError,
    hash_password,
    parse_users,
)
from dcmnet_cli.services.scp.jwt import JWTKeyError, JWTVerifier, load_jwt_key
from dcmnet_cli.services.scu.identity import Identity, IdentityNotConfirmed
from dcmnet_cli.ul.items import UserIdentityAC, UserIdentityRQ, UserInformation
from dcmnet_cli.ul.negotiation import (
    AcceptorPolicy,
    IdentityVerdict,
    build_contexts,
    build_request,
    negotiate_acceptor_explained,
)
from dcmnet_cli.ul.pdu import AssociateAC, AssociateRJ, decode_pdu_bytes, summarize

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
SECRET = "s3cr3t-Pa55"
POLICY = AcceptorPolicy("SCP", {VERIFICATION: [IMPLICIT]})


def _rq(identity: UserIdentityRQ | None):
    return build_request("SCP", "SCU", build_contexts([(VERIFICATION, [IMPLICIT])]), user_identity=identity)


# --------------------------------------------------------------------------- bytes (Tables D.3-14, D.3-15)


def _table_d3_14(kind: int, response: int, primary: bytes, secondary: bytes) -> bytes:
    """The RQ sub-item written field by field from PS3.7 Table D.3-14 (independently of the encoder)."""
    fields = bytes([kind, response]) + struct.pack(">H", len(primary)) + primary
    fields += struct.pack(">H", len(secondary)) + secondary
    return bytes([0x58, 0x00]) + struct.pack(">H", len(fields)) + fields


@pytest.mark.parametrize("kind,response,primary,secondary", [
    (1, 0, b"bob", b""),                       # username only: secondary length 0
    (2, 1, "jörg".encode(), SECRET.encode()),  # UTF-8 username and passcode
    (3, 0, bytes(range(200)), b""),            # Kerberos ticket (opaque bytes)
    (4, 1, b"<saml:Assertion/>", b""),
    (5, 1, b"aaa.bbb.ccc", b""),               # JWT
])
def test_request_sub_item_bytes(kind, response, primary, secondary):
    expected = _table_d3_14(kind, response, primary, secondary)
    sub = UserIdentityRQ(kind, bool(response), primary, secondary)
    assert sub.encode() == expected
    # Item-length counts from byte 5 to the end; byte 2 is reserved 00H.
    assert struct.unpack(">H", expected[2:4])[0] == len(expected) - 4
    decoded = UserInformation.decode(memoryview(expected)).user_identity
    assert decoded == sub


def test_username_passcode_golden():
    """One literal capture: type 2, response requested, 'alice' / 'secret'."""
    golden = bytes.fromhex("58000011" "0201" "0005") + b"alice" + bytes.fromhex("0006") + b"secret"
    assert UserIdentityRQ(2, True, b"alice", b"secret").encode() == golden


def test_response_sub_item_bytes():
    """Table D.3-15: 59H, 00H, item length, server-response length (may be zero), server response."""
    assert UserIdentityAC().encode() == bytes.fromhex("59 00 0002 0000")
    assert UserIdentityAC(b"ticket").encode() == bytes.fromhex("59 00 0008 0006") + b"ticket"
    assert UserInformation.decode(memoryview(bytes.fromhex("59 00 0002 0000"))).user_identity_response == UserIdentityAC()


@pytest.mark.parametrize("value", [
    "02 01 00",                 # shorter than the fixed fields
    "02 01 0009 616c696365",    # primary length past the end
    "02 01 0001 61 0005 6263",  # secondary length does not match the item
    "02 01 0001 61",            # secondary length missing
])
def test_malformed_request_sub_items_are_refused(value):
    body = bytes.fromhex(value.replace(" ", ""))
    with pytest.raises(PDUDecodeError):
        UserInformation.decode(memoryview(bytes([0x58, 0]) + struct.pack(">H", len(body)) + body))


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize("identity", [
    UserIdentityRQ(2, True, b"alice", SECRET.encode()),
    UserIdentityRQ(5, False, SECRET.encode()),
    UserIdentityRQ(4, False, SECRET.encode()),
    UserIdentityRQ(3, False, SECRET.encode()),
])
def test_secrets_never_shown(identity):
    rq = _rq(identity)
    texts = [repr(identity), str(identity), identity.describe(), repr(rq), summarize(rq),
             summarize(decode_pdu_bytes(rq.encode())), repr(Identity(identity))]
    for text in texts:
        assert SECRET not in text
    assert "user identity" in summarize(rq)
    if identity.identity_type == 2:
        assert "'alice'" in summarize(rq) and "passcode redacted" in summarize(rq)


def test_scu_identity_summary_and_missing_confirmation():
    identity = Identity.build(2, b"alice", SECRET.encode(), response=True)
    with pytest.raises(IdentityNotConfirmed):
        identity.record(None)
    assert identity.summary() == {"type": "username-passcode", "user": "alice", "response_requested": True,
                                  "confirmed": False}
    identity.record(UserIdentityAC())
    assert identity.summary()["confirmed"] is True
    assert SECRET not in json.dumps(identity.summary()) + identity.describe_answer()


# --------------------------------------------------------------------------- acceptor decisions


def _verdict(identity):
    return IdentityVerdict(identity.primary == b"alice" and identity.secondary == SECRET.encode(), "words")


@pytest.mark.parametrize("identity,check,require,outcome", [
    (UserIdentityRQ(2, True, b"alice", SECRET.encode()), _verdict, False, "confirmed"),
    (UserIdentityRQ(2, False, b"alice", SECRET.encode()), _verdict, False, "accepted"),  # not asked: no answer
    (UserIdentityRQ(2, True, b"alice", b"wrong"), _verdict, False, "rejected"),
    (UserIdentityRQ(2, True, b"alice", b"wrong"), None, False, "accepted"),  # no check: never confirmed
    (None, _verdict, False, "accepted"),
    (None, None, True, "rejected"),
    (None, _verdict, True, "rejected"),
    (UserIdentityRQ(1, True, b"bob"), None, True, "accepted"),  # required, present, not checked
])
def test_acceptor_decisions(identity, check, require, outcome):
    policy = POLICY._replace(accept_user_identity=check, require_user_identity=require)
    answer, reason = negotiate_acceptor_explained(_rq(identity), policy)
    if outcome == "rejected":
        assert answer == AssociateRJ(1, 1, 1)  # permanent, service user, no reason given
        assert reason
        return
    assert isinstance(answer, AssociateAC)
    response = answer.user_info.user_identity_response
    assert (response is not None) == (outcome == "confirmed")
    if response is not None:
        assert answer.encode().endswith(bytes.fromhex("59 00 0002 0000"))


# --------------------------------------------------------------------------- users file


def test_users_file_round_trip(tmp_path: Path):
    line = f"alice:{hash_password(SECRET).text()}"
    path = tmp_path / "users"
    path.write_text(f"# comment\n\n{line}\n")
    users = UsersFile(str(path))
    assert users.verify("alice", SECRET.encode()).accepted
    wrong = users.verify("alice", b"nope")
    unknown = users.verify("mallory", SECRET.encode())
    assert not wrong.accepted and not unknown.accepted
    assert "alice" in wrong.reason and "mallory" in unknown.reason
    assert SECRET not in wrong.reason + unknown.reason
    # The file is read again when it changes; a broken file fails closed.
    path.write_text(f"{line}\nbob:{hash_password('other').text()}\n")
    assert users.verify("bob", b"other").accepted
    path.write_text("garbage without a hash\n")
    assert not users.verify("alice", SECRET.encode()).accepted


@pytest.mark.parametrize("text", ["alice\n", "alice:scrypt$1$8$1$AAAA$AAAA\n", ":scrypt$16384$8$1$AAAA$" + "A" * 44 + "\n",
                                  "alice:pbkdf2$1000$x$y\n"])
def test_malformed_users_file(text):
    with pytest.raises(UsersFileError, match="line 1"):
        parse_users(text, "users.txt")


def test_identity_policy_types(tmp_path: Path):
    path = tmp_path / "users"
    path.write_text(f"alice:{hash_password(SECRET).text()}\n")
    policy = IdentityPolicy(UsersFile(str(path)))
    assert policy.check(UserIdentityRQ(2, False, b"alice", SECRET.encode())).accepted
    for refused in (UserIdentityRQ(1, False, b"alice"), UserIdentityRQ(5, False, b"a.b.c"),
                    UserIdentityRQ(3, False, b"ticket"), UserIdentityRQ(4, False, b"<a/>"), UserIdentityRQ(9, False, b"x")):
        assert not policy.check(refused).accepted
    applied = policy.apply(POLICY)
    assert applied.accept_user_identity is not None and not applied.require_user_identity


# --------------------------------------------------------------------------- JWT


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret: bytes, claims: dict, alg: str = "HS256") -> bytes:
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + _b64(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}.get(alg, hashlib.sha256)
    return f"{head}.{_b64(hmac.new(secret, head.encode(), digest).digest())}".encode()


KEY = b"k" * 40


def test_jwt_hmac(tmp_path: Path):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    verifier = load_jwt_key(str(key_file))
    now = time.time()
    good = verifier.verify(hs256(KEY, {"sub": "alice", "exp": now + 600}))
    assert good.accepted and "alice" in good.reason
    assert verifier.verify(hs256(KEY, {"sub": "alice"}, "HS384")).accepted
    assert not verifier.verify(hs256(b"x" * 40, {"sub": "alice"})).accepted            # other key
    assert not verifier.verify(hs256(KEY, {"sub": "alice", "exp": now - 3600})).accepted  # expired
    assert not verifier.verify(hs256(KEY, {"sub": "alice", "nbf": now + 3600})).accepted  # not yet
    unsigned = (_b64(b'{"alg":"none"}') + "." + _b64(b'{"sub":"alice"}') + ".").encode()
    assert not verifier.verify(unsigned).accepted
    assert not verifier.verify(b"not a token").accepted
    token = hs256(KEY, {"sub": "alice"})
    assert token.decode() not in verifier.verify(token[:-2] + b"AA").reason


def test_short_hmac_key_refused(tmp_path: Path):
    (tmp_path / "key").write_bytes(b"short\n")
    with pytest.raises(JWTKeyError, match="at least 32"):
        load_jwt_key(str(tmp_path / "key"))


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make an RSA key")
    folder = tmp_path_factory.mktemp("rsa")
    private, public = folder / "key.pem", folder / "pub.pem"
    subprocess.run([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(private)],
                   check=True, capture_output=True, timeout=60)
    subprocess.run([openssl, "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True,
                   capture_output=True, timeout=30)
    return openssl, private, public


def rs256(openssl: str, private: Path, claims: dict) -> bytes:
    head = _b64(b'{"alg":"RS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    signature = subprocess.run([openssl, "dgst", "-sha256", "-sign", str(private)], input=head.encode(),
                               capture_output=True, check=True, timeout=30).stdout
    return f"{head}.{_b64(signature)}".encode()


def test_jwt_rsa(rsa_keys):
    openssl, private, public = rsa_keys
    verifier = load_jwt_key(str(public))
    token = rs256(openssl, private, {"sub": "alice", "exp": time.time() + 600})
    assert verifier.verify(token).accepted
    head, claims, signature = token.split(b".")
    forged = head + b"." + _b64(b'{"sub":"root"}').encode() + b"." + signature
    assert not verifier.verify(forged).accepted
    # Algorithm confusion: an HS256 token "signed" with the public key's PEM text is refused.
    confused = hs256(public.read_bytes(), {"sub": "root"})
    assert not verifier.verify(confused).accepted


def test_jwt_rsa_key_is_not_a_secret(rsa_keys, tmp_path: Path):
    _, private, _ = rsa_keys
    with pytest.raises(JWTKeyError):
        load_jwt_key(str(private))  # a private key is not a public key
    assert isinstance(JWTVerifier(KEY).verify(b"a.b.c"), IdentityVerdict)


def test_hostile_user_names_are_shown_short_and_escaped(tmp_path: Path):
    path = tmp_path / "users"
    path.write_text(f"alice:{hash_password(SECRET).text()}\n")
    verdict = IdentityPolicy(UsersFile(str(path))).check(UserIdentityRQ(2, False, b"\x1b[31m" + b"x" * 5000, b"pw"))
    assert not verdict.accepted and "\x1b" not in verdict.reason and len(verdict.reason) < 120
    assert "\x1b" not in UserIdentityRQ(2, False, b"\x1b[31mred", b"pw").describe()
