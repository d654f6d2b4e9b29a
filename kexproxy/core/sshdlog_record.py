"""A `LogFinding` (sshd's or dropbear's own log lines) as a session record with source "log".

Why a record: the store, the dashboard, the diagnosis and the what-if population all read
records, so a failure known only from a server's log joins the ones seen on the wire. Such a
record has no wire bytes: no KEXINITs, no banners, no HASSH. What the server's line gives is
the peer (the SSH client), the list that failed and the client's offer for it, so `failures`
holds the client's offer and an empty server offer (the log does not show the server's own
list, but for OpenSSH before 6.8; a probe of the server does), and `rejections.server` holds
the line itself. Which program wrote the lines names the server's software
(`server_software`), with no release.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from kexproxy.core.record import JSONDict, SessionRecord, no_ssh_handshake, rfc3339
from kexproxy.core.sshdlog import LogFinding, Server

#: The software a server's log lines show it runs (sshd's program names and message texts are
#: OpenSSH's, dropbear's are Dropbear's), as `implementations` names it.
SERVER_SOFTWARE: Final[dict[Server, str]] = {"openssh": "OpenSSH", "dropbear": "Dropbear"}

#: The verdict line of OpenSSH 7.3 on (packet.c:sshpkt_vfatal), as `rejections`' `message`.
_TODAYS_LINE: Final = re.compile(
    r"Unable to negotiate with .+ port \d+: .+\. Their offer: .*", re.DOTALL
)

#: What sshd sends a client whose identification line it refuses (kex.c:
#: kex_exchange_identification, send_error), by the reason it logs.
_OPENSSH_BANNER_REPLY = {
    "invalid format": "Invalid SSH identification string.",
    "Protocol major versions differ": "Protocol major versions differ.",
}


def finding_record(finding: LogFinding, *, capture: str | None) -> SessionRecord:
    """The record of one finding; `capture` names the log file (None for standard input)."""
    failures: list[JSONDict] = []
    rejection: JSONDict | None = None
    if finding.kind == "negotiation" and finding.list is not None and finding.reason is not None:
        offer = list(finding.their_offer)
        failures.append(
            {
                "list": finding.list,
                "client_offer": offer,
                "server_offer": list(finding.server_offer),
            }
        )
        # `message` is today's OpenSSH line (the contract's pattern): dropbear's and older
        # sshd's own words go to `native`.
        own_words = finding.server == "openssh" and _TODAYS_LINE.fullmatch(finding.message)
        openssh_words = (
            finding.message
            if own_words
            else f"Unable to negotiate with {finding.peer_ip} port {finding.peer_port}: "
            f"{finding.reason}. Their offer: {','.join(offer)}"
        )
        rejection = {
            "list": finding.list,
            "reason": finding.reason,
            "their_offer": offer,
            "message": openssh_words,
            "native": None if own_words else finding.message,
        }
    name = "sshd" if finding.server == "openssh" else "dropbear"
    notes = [f"from {name}'s log: {line}" for line in finding.context]
    notes.append(f"from {name}'s log: {finding.message}")
    notes += finding.notes
    if rejection is not None and rejection["native"] is not None:
        whose = "dropbear's" if finding.server == "dropbear" else "this older sshd's"
        notes.append(
            f"`message` is today's OpenSSH wording for this failure; {whose} own line is `native`"
        )
    if finding.local_ip is None:
        notes.append(
            "the log does not name the server's address (sshd logs it at LogLevel VERBOSE: "
            '"Connection from A port P on B port Q")'
        )
    banner_error = None
    if finding.kind == "banner" and finding.server == "openssh":
        banner_error = _OPENSSH_BANNER_REPLY.get(finding.message.rsplit(": ", 1)[-1])
    return SessionRecord(
        **no_ssh_handshake(),
        id=_record_id(finding, capture),
        source="log",
        capture=capture,
        started=rfc3339(finding.first_ts),
        ended=rfc3339(finding.ts),
        client={"ip": finding.peer_ip, "port": finding.peer_port},
        server={"ip": finding.local_ip, "port": finding.local_port},
        server_host=finding.host,
        server_software=SERVER_SOFTWARE[finding.server],
        outcome="failed" if finding.kind == "negotiation" else "not_ssh",
        negotiated=None,
        failures=failures,
        rejections={"client": None, "server": rejection},
        evidence={
            "first_close": None,  # a log does not show who closed first, or how
            "how": None,
            "disconnects": [],
            "banner_error": banner_error,
        },
        bytes={"c2s": 0, "s2c": 0},
        notes=notes,
        roles={"determined_by": "log", "tcp_initiator": "client"},
        pre_banner_lines={"client": [], "server": []},
    )


def _record_id(finding: LogFinding, capture: str | None) -> str:
    """Stable across runs on the same file: the verdict line, where it is, and who wrote it."""
    key = "\0".join(
        str(part)
        for part in (
            capture,
            finding.line_number,
            finding.host,
            finding.pid,
            finding.ts,
            finding.message,
        )
    )
    return "log-" + hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()[:16]
