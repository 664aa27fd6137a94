"""The tables behind ``--help`` in sections (connection, TLS, query, ...) and its examples.

Click 8 has no option groups: :class:`..options.SectionedCommand` (the class of every command) renders
its options under the headings of :data:`SECTIONS`, a table of section title -> option (parameter)
names, and appends the command's :data:`EXAMPLES`. This module is imported only when help or the man
pages are rendered, so ``dcmnet echo`` pays nothing for it.
"""

from __future__ import annotations

import click

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Connection options", (
        "calling_aet", "called_aet", "connect_timeout", "acse_timeout", "dimse_timeout", "network_timeout",
        "max_pdu", "aetitle", "bind", "require_called_aet", "allow_calling_aet", "max_associations",
        "artim_timeout", "shutdown_grace", "workers")),
    ("TLS options", (
        "tls", "tls_ca", "tls_cert", "tls_key", "tls_key_password_env", "tls_server_name", "tls_no_verify",
        "tls_require_client_cert", "tls_allow_anonymous", "store_tls")),
    ("Identity options", (
        "user", "password_env", "jwt_env", "saml", "kerberos", "identity_response", "users", "jwt_key",
        "require_identity")),
    ("Query options", (
        "patient_root", "study_root", "patient_study_only", "worklist", "level", "keys", "query_file",
        "from_json", "relational", "datetime_matching", "fuzzy", "timezone_adjust")),
    ("Run options", (
        "recursive", "pattern", "jobs", "retries", "retry_delay", "max_rate", "count", "interval", "abort",
        "check", "names")),
    ("Retrieve options", ("destination", "store_port", "retrieve_all")),
    ("Probe options", ("sop_classes", "transfer_syntaxes", "show_all")),
    ("Limits and exit status", ("cancel_after", "deadline", "max_identifier", "warnings_ok")),
    ("Storage options", (
        "storage_classes", "accept_syntaxes", "output_directory", "write_dir", "verify_only", "filepath",
        "on_duplicate", "ignore", "promiscuous", "no_fsync", "exec_on_receive", "exec_on_association_end",
        "exec_timeout")),
    ("Cluster options", ("node_id", "proxy_protocol", "health_check_aet", "print_health_check")),
    ("Output options", (
        "output_format", "no_progress", "report", "quiet", "verbose", "debug", "no_color", "as_json", "help",
        "_click_default_help", "version", "keywords")),
)
"""Section title -> parameter names, in display order; an option not listed goes under "Other options"."""

EXAMPLES: dict[str, tuple[str, ...]] = {
    "echo": ("dcmnet echo localhost 11112", "dcmnet echo PACS@pacs.example.org:104 -c 3 -i 1",
             "dcmnet echo pacs --tls --tls-ca ca.pem --json"),
    "store": ("dcmnet store localhost 11112 study/", "dcmnet store PACS@pacs:104 -j 4 --retries 2 *.dcm",
              "find /data -name '*.dcm' | dcmnet store pacs - --json"),
    "find": ("dcmnet find pacs -k PatientName='DOE^*' -k StudyDate=20240101-",
             "dcmnet find localhost 11112 -L SERIES -k StudyInstanceUID=1.2.3 -k Modality --format csv",
             "dcmnet find pacs -W -k ScheduledProcedureStepSequence[0].Modality=CT --json"),
    "move": ("dcmnet move pacs -k StudyInstanceUID=1.2.3 --dest MYSCP",
             "dcmnet move pacs -k StudyInstanceUID=1.2.3 --store-port 11113 -od incoming/",
             "dcmnet find pacs -k PatientID=42 --json | dcmnet move pacs --from-json - --dest MYSCP"),
    "get": ("dcmnet get pacs -k StudyInstanceUID=1.2.3 -od incoming/",
            "dcmnet get localhost 11112 -L SERIES -k StudyInstanceUID=1.2.3 -k SeriesInstanceUID=1.2.3.4 --json",
            "dcmnet find pacs -k PatientID=42 --json | dcmnet get pacs --from-json -"),
    "listen": ("dcmnet listen 11112 -od incoming/", "dcmnet listen 11112 --filepath '{PatientID}/{SOPInstanceUID}.dcm'",
               "dcmnet listen 11112 --json --exec-on-receive 'echo $DCMNET_PATH'"),
    "probe": ("dcmnet probe localhost 11112", "dcmnet probe PACS@pacs.example.org:104 --all",
              "dcmnet probe pacs --sop-class CTImageStorage --transfer-syntax JPEG2000Lossless --json"),
    "users": ("dcmnet users add users.txt alice", "printf '%s\\n' \"$PW\" | dcmnet users add users.txt alice",
              "dcmnet listen 11112 --users users.txt --require-identity"),
    "nodes": ("dcmnet nodes", "dcmnet nodes --check -j 4", "dcmnet nodes --names"),
    "completion": ("dcmnet completion bash > ~/.local/share/bash-completion/completions/dcmnet",
                   "dcmnet completion zsh > ~/.zfunc/_dcmnet"),
}
"""Two or three command lines per command, shown at the end of its ``--help`` and in its man page."""


def section_of(name: str | None) -> str:
    for title, names in SECTIONS:
        if name in names:
            return title
    return "Other options"


def sectioned(params: list[click.Option]) -> list[tuple[str, list[click.Option]]]:
    """``params`` grouped by :data:`SECTIONS` (table order, then "Other options"), each group in the
    command's own order; empty sections are left out."""
    order = [title for title, _ in SECTIONS] + ["Other options"]
    groups: dict[str, list[click.Option]] = {}
    for param in params:
        groups.setdefault(section_of(param.name), []).append(param)
    return [(title, groups[title]) for title in order if title in groups]
