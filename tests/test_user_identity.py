"""User identity negotiation end to end (PS3.7 D.3.3.7), all on 127.0.0.1: ``dcmnet users add``, our SCUs
against ``listen --users/--jwt-key/--require-identity``, DCMTK storescu's ``--user/--password`` against our
listen, every SCU's identity sub-item as a server receives it, and secrets absent from every output stream.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from dcmnet_cli.services.scp.entity import ApplicationEntity
from dcmnet_cli.services.scp.identity import UsersFile, read_users
from dcmnet_cli.ul.negotiation import AcceptorPolicy, IdentityVerdict

from helpers.procs import LOOPBACK, base_env, dcmnet_argv, find_dcmtk, listen_server, serving
from store_helpers import make_dataset, write
from test_user_identity_unit import KEY, hs256

PASSWORD = "Tr0ub4dor-correct-horse"
WRONG = "wr0ng-battery-staple"


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """``dcmnet ARGS`` with extra environment variables; stdin is not a terminal."""
    full = {**base_env(), **(env or {})}
    done = subprocess.run(dcmnet_argv(*args), capture_output=True, text=True, timeout=timeout, env=full,
                          input=stdin if stdin is not None else "", )
    return done.returncode, done.stdout, done.stderr


def add_user(path: Path, name: str, password: str) -> tuple[int, str, str]:
    return run("users", "add", str(path), name, stdin=password + "\n")


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.txt"
    assert add_user(path, "alice", PASSWORD)[0] == 0
    return path


@pytest.fixture
def dicom_file(tmp_path: Path) -> Path:
    return write(tmp_path / "ct.dcm", make_dataset("identity", rows=8, columns=8))


# --------------------------------------------------------------------------- dcmnet users


def test_users_add_creates_0600_replaces_and_verifies(tmp_path: Path):
    path = tmp_path / "users.txt"
    code, _, err = add_user(path, "alice", "first-password")
    assert code == 0 and "added alice" in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert add_user(path, "bob", "bobs-password")[0] == 0
    code, _, err = add_user(path, "alice", PASSWORD)
    assert code == 0 and "replaced alice" in err
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and sum(line.startswith("alice:") for line in lines) == 1
    assert PASSWORD not in path.read_text()
    table = read_users(str(path))
    assert table["alice"].matches(PASSWORD.encode()) and not table["alice"].matches(b"first-password")
    assert table["bob"].matches(b"bobs-password")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run("users", "remove", str(path), "bob")[0] == 0
    assert list(read_users(str(path))) == ["alice"]


@pytest.mark.parametrize("args,stdin,message", [
    (("add", "{f}", "al:ice"), "pw\n", "':'"),
    (("add", "{f}", "alice"), "\n", "empty password"),
    (("remove", "{f}", "nobody"), "", "no user"),
])
def test_users_add_refusals(tmp_path: Path, args, stdin, message):
    path = tmp_path / "users.txt"
    code, _, err = run("users", *[a.format(f=path) for a in args], stdin=stdin)
    assert code == 2 and message in err and "Traceback" not in err
    assert not path.exists()


def test_users_add_keeps_a_malformed_file(tmp_path: Path):
    path = tmp_path / "users.txt"
    path.write_text("this is not a users file\n")
    code, _, err = add_user(path, "alice", PASSWORD)
    assert code == 2 and "line 1" in err
    assert path.read_text() == "this is not a users file\n"


# --------------------------------------------------------------------------- our SCUs against our listen


def test_echo_identity_accepted_rejected_and_required(users: Path):
    env = {"GOOD_PW": PASSWORD, "BAD_PW": WRONG}
    with listen_server("--verify-only", "--users", str(users), "--require-identity") as server:
        port = str(server.port)
        code, out, err = run("echo", LOOPBACK, port, "--user", "alice", "--password-env", "GOOD_PW",
                             "--identity-response", "-v", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["identity"] == {"type": "username-passcode", "user": "alice", "response_requested": True,
                                               "confirmed": True, "server_response_bytes": 0}
        assert "the peer confirmed it" in err
        assert server.wait_for_stderr("associated (1 context) as user 'alice'"), server.stderr()
        for args, logged in [(("--user", "alice", "--password-env", "BAD_PW"), "user 'alice' refused: wrong password"),
                             (("--user", "mallory", "--password-env", "GOOD_PW"), "unknown user 'mallory'"),
                             (("--user", "alice"), "no password given"),
                             ((), "no user identity given")]:
            mark = server.mark()
            code, out, err = run("echo", LOOPBACK, port, *args, env=env)
            assert code == 5, (args, err)
            assert "no reason given" in err
            assert server.wait_for_stderr(logged, since=mark), server.stderr()


def test_identity_response_refused_by_a_peer_that_does_not_verify():
    """--identity-response against a listener without checks: accepted but unconfirmed, so exit 5 (after a
    release: nothing was sent)."""
    with listen_server("--verify-only") as server:
        code, out, err = run("echo", LOOPBACK, str(server.port), "--user", "alice", "--password-env", "PW",
                             "--identity-response", "--json", env={"PW": PASSWORD})
        assert code == 5
        assert "did not confirm the user identity" in err
        assert json.loads(out)["identity"]["confirmed"] is False
        code, _, err = run("echo", LOOPBACK, str(server.port), "--user", "alice", "--password-env", "PW",
                           env={"PW": PASSWORD})
        assert code == 0, err


def test_store_with_jwt_and_password(users: Path, dicom_file: Path, tmp_path: Path):
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    os.chmod(key, 0o600)
    token = hs256(KEY, {"sub": "robot", "exp": time.time() + 600}).decode()
    expired = hs256(KEY, {"sub": "robot", "exp": time.time() - 3600}).decode()
    out_dir = tmp_path / "in"
    with listen_server("-od", str(out_dir), "--users", str(users), "--jwt-key", str(key), "--require-identity") as server:
        port = str(server.port)
        code, out, err = run("store", LOOPBACK, port, str(dicom_file), "--jwt-env", "TOKEN", "--identity-response",
                             "--json", env={"TOKEN": token})
        assert code == 0, err
        summary = json.loads(out.splitlines()[-1])
        assert summary["identity"]["type"] == "jwt" and summary["identity"]["confirmed"] is True
        assert summary["identity"]["user"] is None
        mark = server.mark()
        code, _, err = run("store", LOOPBACK, port, str(dicom_file), "--jwt-env", "TOKEN", env={"TOKEN": expired})
        assert code == 5
        assert server.wait_for_stderr("JWT subject 'robot' refused: expired", since=mark)
        code, _, err = run("store", LOOPBACK, port, str(dicom_file), "--user", "alice", "--password-env", "PW",
                           env={"PW": PASSWORD})
        assert code == 0, err
    assert len(list(out_dir.rglob("*.dcm"))) == 1  # the same instance twice: replaced


def test_saml_and_kerberos_refused_by_a_checking_listener(users: Path, tmp_path: Path):
    assertion = tmp_path / "assertion.xml"
    assertion.write_text("<saml:Assertion/>")
    with listen_server("--verify-only", "--users", str(users)) as server:
        for flag, logged in (("--saml", "saml identities are not accepted"), ("--kerberos", "kerberos identities")):
            mark = server.mark()
            code, _, err = run("echo", LOOPBACK, str(server.port), flag, str(assertion))
            assert code == 5, err
            assert server.wait_for_stderr(logged, since=mark)


@pytest.mark.parametrize("args,message", [
    (("--password", "hunter2"), "--password-env"),
    (("--user", "a", "--jwt-env", "X"), "give one identity"),
    (("--password-env", "PW"), "needs --user"),
    (("--identity-response",), "needs an identity"),
    (("--user", "a", "--password-env", "UNSET_VARIABLE_X"), "UNSET_VARIABLE_X is not set"),
    (("--kerberos", "/nonexistent/ticket"), "--kerberos"),
])
def test_identity_usage_errors(args, message):
    code, out, err = run("echo", LOOPBACK, "9", *args, env={"PW": PASSWORD})
    assert code == 2 and message in err and "Traceback" not in err
    assert "hunter2" not in out + err


def test_node_user_and_password_env(users: Path, tmp_path: Path):
    with listen_server("--verify-only", "--users", str(users), "--require-identity") as server:
        config = tmp_path / "config.toml"
        config.write_text(f'[nodes.secure]\nhost = "{LOOPBACK}"\nport = {server.port}\nuser = "alice"\n'
                          f'password_env = "NODE_PW"\n')
        env = {"DCMNET_CONFIG": str(config), "NODE_PW": PASSWORD}
        code, out, err = run("echo", "secure", "--identity-response", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["identity"]["user"] == "alice"
        code, _, err = run("echo", "secure", env={**env, "NODE_PW": WRONG})
        assert code == 5
        # The options' own environment variables and [defaults] keys (cli/config.py) work as for any option.
        config.write_text('[defaults]\nuser = "alice"\npassword_env = "DEFAULT_PW"\n')
        code, out, err = run("echo", LOOPBACK, str(server.port), "--json", env={"DCMNET_CONFIG": str(config),
                                                                               "DEFAULT_PW": PASSWORD})
        assert code == 0 and json.loads(out)["identity"]["user"] == "alice", err
        code, out, err = run("echo", LOOPBACK, str(server.port), env={"DCMNET_USER": "alice", "DCMNET_PASSWORD_ENV": "X",
                                                                      "X": PASSWORD})
        assert code == 0, err


# --------------------------------------------------------------------------- every SCU sends the sub-item


class Recorder:
    """An in-process acceptor that accepts any abstract syntax and records each identity it receives."""

    def __init__(self) -> None:
        self.seen: list = []

    def check(self, identity):
        self.seen.append(identity)
        return IdentityVerdict(True, "recorded")

    def entity(self) -> ApplicationEntity:
        syntaxes = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
        policy = AcceptorPolicy("ANY-SCP", lambda uid: syntaxes, accept_user_identity=self.check,
                                scp_roles=lambda uid: True)
        return ApplicationEntity(policy)


QUERY = ("-k", "StudyInstanceUID=1.2.3", "-L", "STUDY")
SCU_COMMANDS = {
    "echo": (),
    "find": QUERY,
    "move": (*QUERY, "--dest", "NOWHERE"),
    "get": QUERY,
}


@pytest.mark.parametrize("command,kind", [(c, "password") for c in [*SCU_COMMANDS, "store"]]
                         + [("echo", "jwt"), ("get", "jwt")])  # the token takes the same path in every SCU
def test_every_scu_sends_the_identity_and_never_shows_the_secret(command, kind, dicom_file: Path):
    """Each SCU with -v, --debug and --json: the server receives the exact identity, and the secret is in
    none of the command's streams (the identity's JSON field and the -v/--debug lines show no secret)."""
    recorder = Recorder()
    token = hs256(KEY, {"sub": "robot"}).decode()
    secret = PASSWORD if kind == "password" else token
    identity = ("--user", "alice", "--password-env", "SECRET") if kind == "password" else ("--jwt-env", "SECRET")
    extra = (str(dicom_file),) if command == "store" else SCU_COMMANDS[command]
    with serving(recorder.entity()) as port:
        # --debug implies -vv: the -v lines, the PDU traces on stderr and the JSON summary on stdout at once.
        code, out, err = run(command, LOOPBACK, str(port), *extra, *identity, "--identity-response", "--debug", "--json",
                             env={"SECRET": secret})
        assert code not in (2, 70), err
        assert secret not in out and secret not in err, command
        assert "user identity" in err and "A-ASSOCIATE-RQ" in err and "the peer confirmed it" in err
        if command != "find":  # find --json prints matches only, no summary
            assert json.loads(out.splitlines()[-1])["identity"]["confirmed"] is True
    assert recorder.seen, command
    for sent in recorder.seen:
        if kind == "password":
            assert (sent.identity_type, sent.primary, sent.secondary) == (2, b"alice", PASSWORD.encode())
        else:
            assert (sent.identity_type, sent.primary, sent.secondary) == (5, token.encode(), b"")
        assert sent.positive_response_requested


def test_listen_log_never_shows_secrets(users: Path, dicom_file: Path, tmp_path: Path):
    """listen --debug --json (PDU traces on stderr, events on stdout) with accepted and refused passwords
    and tokens: none appears in its streams, nor in the clients' (-v, --debug, --json)."""
    key = tmp_path / "jwt.key"
    key.write_bytes(KEY)
    token = hs256(KEY, {"sub": "robot"}).decode()
    bad_token = hs256(b"z" * 40, {"sub": "robot"}).decode()
    runs = [("echo", ("--user", "alice", "--password-env", "S"), PASSWORD, 0),
            ("echo", ("--user", "alice", "--password-env", "S"), WRONG, 5),
            ("store", ("--jwt-env", "S"), token, 0),
            ("store", ("--jwt-env", "S"), bad_token, 5)]
    streams: list[str] = []
    with listen_server("-od", str(tmp_path / "in"), "--users", str(users), "--jwt-key", str(key), "--debug",
                       "--json") as server:
        for command, identity, secret, expected in runs:
            files = (str(dicom_file),) if command == "store" else ()
            code, out, err = run(command, LOOPBACK, str(server.port), *files, *identity, "--debug", "--json",
                                 env={"S": secret})
            assert code == expected, err
            streams += [out, err]
        assert server.wait_for_stderr("A-ASSOCIATE-RQ")
        # the listener writes its events after answering: wait for the last run's rejection to be written
        assert server.wait_for_stdout("JWT refused"), server.stdout()
        streams += [server.stdout(), server.stderr()]
    events = [json.loads(line) for line in streams[-2].splitlines()]
    reasons = [e.get("reason_text", "") for e in events if e.get("event") == "rejected"]
    assert any("user 'alice' refused: wrong password" in r for r in reasons), events
    assert any("JWT refused" in r for r in reasons), events
    assert "passcode redacted" in streams[-1]
    for secret in (PASSWORD, WRONG, token, bad_token):
        assert not any(secret in text for text in streams), "a secret leaked"


# --------------------------------------------------------------------------- DCMTK storescu


@pytest.fixture(scope="module")
def storescu() -> str:
    found, missing = find_dcmtk(("storescu",))
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("DCMTK storescu not found on PATH")
        pytest.skip("DCMTK storescu not found on PATH")
    return found["storescu"]


def _storescu(tool: str, port: int, path: Path, *args: str) -> tuple[int, str]:
    done = subprocess.run([tool, *args, LOOPBACK, str(port), str(path)], capture_output=True, text=True, timeout=30,
                          env=base_env(dcmtk=True), stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout + done.stderr


def test_dcmtk_storescu_user_identity(storescu: str, users: Path, dicom_file: Path, tmp_path: Path):
    out_dir = tmp_path / "in"
    with listen_server("-od", str(out_dir), "--users", str(users), "--require-identity") as server:
        code, text = _storescu(storescu, server.port, dicom_file, "--user", "alice", "--password", PASSWORD,
                               "--pos-response")
        assert code == 0, text
        assert len(list(out_dir.rglob("*.dcm"))) == 1
        for args, logged in [(("--user", "alice", "--password", WRONG), "user 'alice' refused: wrong password"),
                             (("--user", "nobody", "--password", PASSWORD), "unknown user 'nobody'"),
                             ((), "no user identity given")]:
            mark = server.mark()
            code, text = _storescu(storescu, server.port, dicom_file, *args)
            assert code != 0 and "Association Rejected" in text, text
            assert server.wait_for_stderr(logged, since=mark)
        assert PASSWORD not in server.stderr() and WRONG not in server.stderr()
    assert len(list(out_dir.rglob("*.dcm"))) == 1


def test_dcmtk_storescu_positive_response_needs_verification(storescu: str, dicom_file: Path, tmp_path: Path):
    """storescu --pos-response fails against a listener that does not check identities: our positive
    response is sent only for a verified identity (PS3.7 D.3.3.7)."""
    with listen_server("-od", str(tmp_path / "in")) as server:
        code, text = _storescu(storescu, server.port, dicom_file, "--user", "alice", "--password", PASSWORD,
                               "--pos-response")
        assert code != 0, text
        code, text = _storescu(storescu, server.port, dicom_file, "--user", "alice", "--password", PASSWORD)
        assert code == 0, text


def test_listen_refuses_a_bad_users_file(tmp_path: Path):
    bad = tmp_path / "users.txt"
    bad.write_text("alice\n")
    code, _, err = run("listen", "--bind", LOOPBACK, "--verify-only", "--users", str(bad), "0")
    assert code == 2 and "line 1" in err
    code, _, err = run("listen", "--bind", LOOPBACK, "--verify-only", "--users", str(tmp_path / "missing"), "0")
    assert code == 2 and "Traceback" not in err


def test_users_file_change_is_picked_up(users: Path):
    table = UsersFile(str(users))
    assert add_user(users, "carol", "carols-password")[0] == 0
    assert table.verify("carol", b"carols-password").accepted


# --------------------------------------------------------------------------- prompts on a terminal


def _on_terminal(argv: list[str], answers: list[str], timeout: float = 20.0) -> tuple[int, str]:
    """Run ``argv`` with stdin/stdout/stderr on a pseudo-terminal, typing ``answers`` at each password
    prompt; the child is killed if it outlives ``timeout``."""
    import pty
    import select
    import signal

    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execve(argv[0], argv, base_env())
    seen, typed, deadline = b"", 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if typed < len(answers) and seen.count(b"assword") + seen.count(b"Again") > typed:
                os.write(fd, answers[typed].encode() + b"\n")
                typed += 1
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode("utf-8", "replace")


def test_password_prompts_on_a_terminal(users: Path, tmp_path: Path):
    path = tmp_path / "prompted.txt"
    code, text = _on_terminal(dcmnet_argv("users", "add", str(path), "dave"), ["dave-password", "dave-password"])
    assert code == 0 and "Again" in text, text
    assert read_users(str(path))["dave"].matches(b"dave-password")
    code, text = _on_terminal(dcmnet_argv("users", "add", str(path), "erin"), ["one-password", "another"])
    assert code == 2 and "differ" in text
    assert "erin" not in read_users(str(path))
    with listen_server("--verify-only", "--users", str(users), "--require-identity") as server:
        code, text = _on_terminal(dcmnet_argv("echo", LOOPBACK, str(server.port), "--user", "alice",
                                              "--identity-response"), [PASSWORD])
        assert code == 0, text
        assert f"Password for alice at {LOOPBACK}:{server.port}" in text and PASSWORD not in text
