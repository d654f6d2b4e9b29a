"""Each side's own words for a failed negotiation: the line its software prints or logs.

`rejections.<side>.message` is OpenSSH's wording; a user running PuTTY, dropbear or a
library greps their logs for that software's own line instead, so the record carries it too.
Every template below is quoted from the implementation's source (cited beside it) or from
what the real peer printed in `captures/`, and is only used for the releases it was read
in: for anything else the answer is None, never a guess. Each implementation checks the
lists in its own order and stops at its first failure, which is not always OpenSSH's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kexproxy.core.catalogue import version_key
from kexproxy.core.diagnosis.software import Software
from kexproxy.core.lists import KEX_ALGORITHMS, MARKERS, RFC_NAMES, SERVER_HOST_KEY_ALGORITHMS
from kexproxy.core.negotiation import Role

#: A native line is cut here: the software prints whole offers, which a stranger can make
#: 256 KiB long, and the record must stay small (the start is what a user greps for).
NATIVE_CHARS = 2048

#: The eight negotiated lists in RFC 4253 section 7.1 order, which every implementation
#: below follows (the registry's order; the two language lists are never negotiated).
KEX = KEX_ALGORITHMS
HOST_KEY = SERVER_HOST_KEY_ALGORITHMS
ORDER: tuple[str, ...] = RFC_NAMES[:8]


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """What a side saw: its role, the lists with no match, both offers, and the peer's address."""

    role: Role
    failing: frozenset[str]
    own: Mapping[str, Sequence[str]]
    peer: Mapping[str, Sequence[str]]
    peer_addr: tuple[str, int]

    def first(self, order: Sequence[str] = ORDER) -> str | None:
        """The first failing list in `order`: where that software stops."""
        return next((name for name in order if name in self.failing), None)

    def client_server(self, rfc: str) -> tuple[Sequence[str], Sequence[str]]:
        """(client's offer, server's offer) of one list."""
        own, peer = self.own.get(rfc, ()), self.peer.get(rfc, ())
        return (own, peer) if self.role == "client" else (peer, own)


def native_line(software: Software, failed: Failed, *, openssh_message: str) -> str | None:
    """What `software` prints or logs for this failure, or None when kexproxy does not know.

    For OpenSSH it is OpenSSH's own line, the record's `message` (sshd's without " [preauth]").
    """
    if software.is_openssh:
        return openssh_message
    name = software.name or ""
    for prefix, template in _TEMPLATES:
        if name.startswith(prefix):
            line = template(software, failed)
            return None if line is None else line[:NATIVE_CHARS]
    return None


def _release(software: Software, prefix: str) -> tuple[int, ...] | None:
    """The release in a banner's software field after `prefix` ("paramiko_5.1.0" -> (5, 1, 0))."""
    text = (software.name or "")[len(prefix) :]
    if not text or not text[0].isdigit():
        return None
    return version_key(text)


# Dropbear: common-kex.c read_kex_algos() checks the lists in RFC order, skips a MAC list
# when the cipher is AEAD (DROPBEAR_AEAD_MODE, 2020.79 on) and ends with
# dropbear_exit("No matching algo %s", erralgo) (2012.55 to 2025, read in mkj/dropbear).
_DROPBEAR_LIST = dict(
    zip(
        ORDER,
        (
            "kex",
            "hostkey",
            "enc c->s",
            "enc s->c",
            "mac c->s",
            "mac s->c",
            "comp c->s",
            "comp s->c",
        ),
        strict=True,
    )
)
#: svr-session.c svr_dropbear_exit(): " from <%s>" is formatted into char fromaddr[60].
_DROPBEAR_FROMADDR = 60 - 1


def _dropbear(software: Software, failed: Failed) -> str | None:
    if software.version is None or version_key(software.version) < (2012, 55):
        return None
    first = failed.first()
    if first is None:
        return None
    exitmsg = f"No matching algo {_DROPBEAR_LIST[first]}"
    if failed.role == "client":
        # cli-session.c cli_dropbear_exit(): "Connection to %s@%s:%s exited: %s" with the
        # user and host as typed, which the wire does not show: the record keeps what it
        # can know, the part after "exited: " (captures/dropbear-client-*.json).
        return exitmsg
    if version_key(software.version) < (2020, 79):
        # svr-session.c before 2020.79: "Exit before auth: %s", no address.
        return f"Exit before auth: {exitmsg}"
    # svr-session.c 2020.79 on: "Exit before auth%s: %s" with " from <HOST:PORT>"
    # (captures/dropbear-server-kex-fail.json).
    fromaddr = f" from <{failed.peer_addr[0]}:{failed.peer_addr[1]}>"[:_DROPBEAR_FROMADDR]
    return f"Exit before auth{fromaddr}: {exitmsg}"


# paramiko: transport.py Transport._parse_kex_init() (2.0.0 to 5.x, read in
# paramiko/paramiko) raises IncompatiblePeer, an SSHException, with these words,
# checking kex, host key, both ciphers, both MACs (even for an AEAD cipher), both
# compressions; the transport thread logs it as "Exception (client): " + the message.
_PARAMIKO = {
    KEX: "Incompatible ssh peer (no acceptable kex algorithm)",
    HOST_KEY: "Incompatible ssh peer (no acceptable host key)",
    "cipher": "Incompatible ssh server (no acceptable ciphers)",
    "mac": "Incompatible ssh server (no acceptable macs)",
}
_PARAMIKO_ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    (KEX, (KEX,)),
    (HOST_KEY, (HOST_KEY,)),
    ("cipher", ORDER[2:4]),
    ("mac", ORDER[4:6]),
    ("compression", ORDER[6:8]),
)


def _paramiko(software: Software, failed: Failed) -> str | None:
    release = _release(software, "paramiko_")
    if release is None or release < (2,):
        return None
    for step, lists in _PARAMIKO_ORDER:
        if not failed.failing.intersection(lists):
            continue
        if step != "compression":
            return _PARAMIKO[step]
        # "... (no acceptable compression) {!r} {!r} {!r}": what it agreed each way, in
        # its own preference order, and its own (one) compression list as a tuple.
        own = tuple(failed.own.get(ORDER[6], ()))
        c2s_peer, s2c_peer = failed.peer.get(ORDER[6], ()), failed.peer.get(ORDER[7], ())
        if failed.role == "client":
            local = [n for n in own if n in c2s_peer]
            remote = [n for n in own if n in s2c_peer]
        else:
            remote = [n for n in c2s_peer if n in own]
            local = [n for n in s2c_peer if n in own]
        return f"Incompatible ssh server (no acceptable compression) {local!r} {remote!r} {own!r}"
    return None


# AsyncSSH: connection.py SSHConnection._choose_alg() (2.23.0 on, read in ronf/asyncssh):
# "No matching {alg_type} algorithm found, sent {ours} and received {theirs}", an empty
# list shown as "<None>", its own kex list without the ext-info/kex-strict markers it adds.
# Order: kex, (server only) host key, ciphers, MACs unless AEAD, compressions.
_ASYNCSSH_TYPE = dict(
    zip(
        ORDER,
        (
            "key exchange",
            "",
            "encryption",
            "encryption",
            "MAC",
            "MAC",
            "compression",
            "compression",
        ),
        strict=True,
    )
)


def _asyncssh(software: Software, failed: Failed) -> str | None:
    release = _release(software, "AsyncSSH_")
    if release is None or release < (2, 23):
        return None
    first = failed.first()
    if first is None:
        return None
    if first == HOST_KEY:
        # The server raises KeyExchangeFailed('Unable to find compatible server host key');
        # the client checks host keys elsewhere, in words not read here.
        return "Unable to find compatible server host key" if failed.role == "server" else None
    ours = list(failed.own.get(first, ()))
    if first == KEX:
        ours = [n for n in ours if n not in MARKERS]
    theirs = list(failed.peer.get(first, ()))
    if not all(n.isascii() for n in (*ours, *theirs)):
        return None  # it decodes the lists as ASCII and would fail otherwise
    return (
        f"No matching {_ASYNCSSH_TYPE[first]} algorithm found, "
        f"sent {','.join(ours) or '<None>'} and received {','.join(theirs) or '<None>'}"
    )


# PuTTY 0.78 (Debian 0.78-2+deb12u2, the plink in captures/): for the first list in RFC
# order with no match it aborts with "Selected %s \"%.*s\" does not correspond to any
# supported algorithm", quoting the server's whole list (captures/plink-kex-fail.json,
# plink-mac-fail.json); the list names are kexlist_descr[] of ssh/transport2.c. Other
# releases word it "Couldn't agree a %s (available: %.*s)" in the source; not verified.
_PUTTY_LIST = dict(
    zip(
        ORDER,
        (
            "key exchange algorithm",
            "host key algorithm",
            "client-to-server cipher",
            "server-to-client cipher",
            "client-to-server MAC",
            "server-to-client MAC",
            "client-to-server compression method",
            "server-to-client compression method",
        ),
        strict=True,
    )
)


def _putty(software: Software, failed: Failed) -> str | None:
    if software.name != "PuTTY_Release_0.78" or failed.role != "client":
        return None
    first = failed.first()
    if first is None:
        return None
    _client, server = failed.client_server(first)
    return (
        f'Selected {_PUTTY_LIST[first]} "{",".join(server)}" '
        "does not correspond to any supported algorithm"
    )


# Go x/crypto/ssh: common.go findAgreedAlgorithms() and AlgorithmNegotiationError (since
# commit 74e709a, January 2024): "ssh: no common algorithm for %s; we offered: %q, peer
# offered: %q", lists in RFC order, MACs skipped for AEAD ciphers, markers compared as
# names. The banner ("SSH-2.0-Go") has no release, so older builds' wording ("client
# offered: %v, server offered: %v") cannot be told apart: this is the current one.
_GO_LIST = dict(
    zip(
        ORDER,
        (
            "key exchange",
            "host key",
            "client to server cipher",
            "server to client cipher",
            "client to server MAC",
            "server to client MAC",
            "client to server compression",
            "server to client compression",
        ),
        strict=True,
    )
)


def _go_quoted(names: Sequence[str]) -> str | None:
    """Go's %q of a []string for printable ASCII names; None where Go's escapes would differ."""
    if not all(n.isascii() and n.isprintable() for n in names):
        return None
    quoted = ('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names)
    return "[" + " ".join(quoted) + "]"


def _go(software: Software, failed: Failed) -> str | None:
    if software.name != "Go":
        return None
    first = failed.first()
    if first is None:
        return None
    ours = _go_quoted(failed.own.get(first, ()))
    theirs = _go_quoted(failed.peer.get(first, ()))
    if ours is None or theirs is None:
        return None
    return f"ssh: no common algorithm for {_GO_LIST[first]}; we offered: {ours}, peer offered: {theirs}"


# JSch (client only). JCraft's 0.1.x ("SSH-2.0-JSCH-0.1.55"): Session.receive_kexinit()
# throws JSchException("Algorithm negotiation fail") whatever the list. The mwiede/jsch
# fork ("SSH-2.0-JSCH_0.2.x"): JSchAlgoNegoFailException, "Algorithm negotiation fail:
# algorithmName=\"%s\" jschProposal=\"%s\" serverProposal=\"%s\"", its own list as sent.
_JSCH_LIST = dict(
    zip(
        ORDER,
        (
            "kex",
            "server_host_key",
            "cipher.c2s",
            "cipher.s2c",
            "mac.c2s",
            "mac.s2c",
            "compression.c2s",
            "compression.s2c",
        ),
        strict=True,
    )
)


def _jsch(software: Software, failed: Failed) -> str | None:
    if failed.role != "client":
        return None
    if (software.name or "").startswith("JSCH-0.1."):
        return "Algorithm negotiation fail"
    release = _release(software, "JSCH_")
    first = failed.first()
    if release is None or release < (0, 2) or first is None:
        return None
    client, server = failed.client_server(first)
    return (
        f'Algorithm negotiation fail: algorithmName="{_JSCH_LIST[first]}" '
        f'jschProposal="{",".join(client)}" serverProposal="{",".join(server)}"'
    )


#: Banner software-field prefixes and the template each names; Dropbear's field is
#: "dropbear_2022.83", which `Software` names "Dropbear".
_TEMPLATES: tuple[tuple[str, Callable[[Software, Failed], str | None]], ...] = (
    ("Dropbear", _dropbear),
    ("paramiko_", _paramiko),
    ("AsyncSSH_", _asyncssh),
    ("PuTTY_", _putty),
    ("Go", _go),
    ("JSCH", _jsch),
)
