"""sshd's and dropbear's own log lines, joined per connection into findings (sans-I/O).

Theory of operation: a server logs one connection over several lines. `SshdLogReader` is fed
lines (`receive_line`) and returns a `LogFinding` for each line that ends a connection with a
verdict: OpenSSH's "Unable to negotiate with A port P: REASON. Their offer: LIST [preauth]"
(packet.c:sshpkt_vfatal; its older wordings too: "fatal: " before it up to 7.2, no " port P"
before 7.2, "TAG: Connection to A: REASON" in 6.8 and 6.9, and up to 6.7 kex.c's "no matching
cipher found: client LIST server LIST", which names no peer; see `_negotiation`), its
"banner exchange: Connection from A port P: REASON" (sshd-session.c / sshd-auth.c:main ->
sshpkt_fatal), and dropbear's "Exit before auth from <A:P>: No matching algo X"
(common-kex.c:read_kex_algos -> svr-session.c:svr_dropbear_exit).
The lines before it about the same connection ("Connection from A port P on B port Q",
sshd-session.c:main; "kex_exchange_identification: ...", kex.c:kex_exchange_identification;
dropbear's "Child connection from A:P", svr-main.c:main_noinetd) are kept and added to it.

Lines are joined by (host, pid): sshd's monitor logs every line of a connection, its
pre-auth child's included, under one pid, as dropbear's per-connection child does. ``sshd -e``
writes no pid: there lines are joined by the peer's address and port, and a line that names
no address ("kex_exchange_identification: ...") waits for the next one that does.

Bounds: at most `MAX_OPEN_CONNECTIONS` connections are remembered (the oldest is forgotten and
counted in `forgotten`), `MAX_CONTEXT_LINES` lines each, `MAX_OFFER_NAMES` names of an offer.
A hostile line is text like any other: it matches a pattern or is skipped, never raises.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Final, Literal

from kexproxy.core.lists import (
    KEX_ALGORITHMS,
    KIND,
    NEGOTIATED,
    SERVER_HOST_KEY_ALGORITHMS,
    rfc_names_of,
)
from kexproxy.core.logline import LogLine, split_line

#: Connections remembered at once while their verdict is awaited.
MAX_OPEN_CONNECTIONS: Final = 10_000
#: Lines of one connection kept for its record's notes.
MAX_CONTEXT_LINES: Final = 8
#: Names kept of the peer's offer (OpenSSH reads 40 of a list, match.c MAX_PROP; an offer
#: may be longer, but a log line cannot hold many more).
MAX_OFFER_NAMES: Final = 256
#: Longest algorithm name kept (OpenSSH's names are under 64 characters).
MAX_NAME_CHARS: Final = 255
MAX_PORT: Final = 65_535
#: sshd's syslog line is cut at 500 characters (log.c:do_log "%.500s"): an offer that fills it
#: may be cut.
SYSLOG_CUT_CHARS: Final = 500

Server = Literal["openssh", "dropbear"]
FindingKind = Literal["negotiation", "banner"]

#: The programs whose lines are read; others in a mixed syslog file are skipped.
OPENSSH_PROGRAMS: Final = frozenset({"sshd", "sshd-session", "sshd-auth"})
DROPBEAR_PROGRAMS: Final = frozenset({"dropbear"})

_ADDR = r"(?P<ip>[0-9A-Fa-f:.%a-zA-Z_-]{1,64})"
_LOCAL = r"(?P<lip>[0-9A-Fa-f:.%a-zA-Z_-]{1,64})"
_CONNECTION_FROM = re.compile(
    rf"Connection from {_ADDR} port (?P<port>\d{{1,5}}) on {_LOCAL} port (?P<lport>\d{{1,5}})"
    r"(?: rdomain \".*\")?"
)
#: OpenSSH 7.2 on (packet.c:sshpkt_fatal; " port N" since 7.2, the line alone since 7.0).
_UNABLE = re.compile(
    r"Unable to negotiate with (?P<who>.{1,260}?)(?: port (?P<port>\d{1,5}))?: "
    r"(?P<reason>no matching [a-zA-Z ]{1,40} found)\. Their offer: (?P<offer>.*)",
    re.DOTALL,
)
#: OpenSSH 6.8 and 6.9 (packet.c:sshpkt_fatal, tagged with the caller's name, no lists).
_CONNECTION_TO = re.compile(
    r"[a-z_]{1,64}: Connection to (?P<who>[^\s:]{1,64}|[0-9A-Fa-f:.%]{1,64}): "
    r"(?P<reason>no matching [a-zA-Z ]{1,40} found)"
)
#: OpenSSH up to 6.7 (kex.c:choose_enc, choose_mac, choose_comp, choose_kex,
#: choose_hostkeyalg): no address; a cipher, MAC or compression line gives both lists.
_CHOOSE = re.compile(
    r"no matching (?P<what>cipher|mac|comp) found: client (?P<client>\S*) server (?P<server>\S*)"
    r"|(?P<kex>Unable to negotiate a key exchange method)|(?P<hostkey>no hostkey alg)"
)
#: `_CHOOSE`'s words to ssherr.c's, by which `list_of_reason` names the list.
_OLD_REASONS: Final = {
    "cipher": "no matching cipher found",
    "mac": "no matching MAC found",
    "comp": "no matching compression method found",
    "kex": "no matching key exchange method found",
    "hostkey": "no matching host key type found",
}
_BANNER = re.compile(
    r"banner exchange: Connection from " + _ADDR + r" port (?P<port>\d{1,5}): (?P<why>.*)",
    re.DOTALL,
)
#: OpenSSH up to 8.0 refused an identification line in sshd.c:sshd_exchange_identification.
_OLD_BANNER = re.compile(
    r"(?:Bad protocol version identification '.*' from|Protocol major versions differ for) "
    + _ADDR
    + r" port (?P<port>\d{1,5})(?:: .*)?",
    re.DOTALL,
)
_ENDED = re.compile(
    r"(?:Connection closed by|Connection reset by|Disconnected from|Received disconnect from"
    r"|Did not receive identification string from)"
    r"(?: .{0,260}?)? " + _ADDR + r" port (?P<port>\d{1,5})\b.*",
    re.DOTALL,
)
_DROPBEAR_CHILD = re.compile(
    r"Child connection from (?:\[(?P<ip6>[^\]]{1,64})\]|(?P<ip>[^:\s]{1,64})):(?P<port>\d{1,5})"
)
_DROPBEAR_EXIT = re.compile(
    r"(?:Early exit|Exit before auth|Exit \([^)]{0,64}\)) from "
    r"<(?:\[(?P<ip6>[^\]]{1,64})\]|(?P<ip>[^:\s>]{1,64})):(?P<port>\d{1,5})>: (?P<why>.*)",
    re.DOTALL,
)
_DROPBEAR_ALGO = re.compile(
    r"(?:\(user '.*', \d+ fails\): )?No matching algo (?P<algo>[a-z >-]{1,16})"
)
#: dropbear's words for the kinds of list (common-kex.c:read_kex_algos, `erralgo`), and for
#: the directions.
_DROPBEAR_KINDS: Final = {"enc": "cipher", "mac": "mac", "comp": "compression"}
_DROPBEAR_ARROWS: Final = {"c->s": "c2s", "s->c": "s2c"}
#: dropbear's "No matching algo X": X to the RFC 4253 list it names.
DROPBEAR_LISTS: Final = {
    "kex": KEX_ALGORITHMS,
    "hostkey": SERVER_HOST_KEY_ALGORITHMS,
    **{
        f"{word} {arrow}": n.rfc
        for word, kind in _DROPBEAR_KINDS.items()
        for arrow, direction in _DROPBEAR_ARROWS.items()
        for n in NEGOTIATED
        if n.kind == kind and n.direction == direction
    },
}
_PREAUTH = (" [preauth]", " [postauth]")


def list_of_reason(reason: str) -> str | None:
    """The list an OpenSSH server names with `reason` (ssherr.c's words), None if unknown.

    sshd's line does not say the direction of a cipher, MAC or compression failure: sshd
    checks its incoming one, client to server, first (kex.c:kex_choose_conf, MODE_IN), so that
    is the list it names when the client's lists are the same both ways.
    """
    for kind in KIND.values():
        if kind.reason == reason:
            names = rfc_names_of(kind.kind)
            if len(names) == 1:
                return next(iter(names))
            return next(n for n in sorted(names) if n.endswith("client_to_server"))
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFinding:
    """A connection's verdict as the server logged it, with the lines before it."""

    kind: FindingKind
    server: Server
    peer_ip: str
    peer_port: int
    #: The local address and port from "Connection from A port P on B port Q", if logged.
    local_ip: str | None = None
    local_port: int | None = None
    host: str | None = None
    pid: int | None = None
    #: When the connection's first line and its verdict's line were logged.
    first_ts: float | None = None
    ts: float | None = None
    #: RFC 4253 list name (`list_of_reason`), None for a banner failure.
    list: str | None = None
    reason: str | None = None
    their_offer: tuple[str, ...] = ()
    #: The server's own list, where its line gives it (OpenSSH before 6.8: "client X server Y").
    server_offer: tuple[str, ...] = ()
    #: The verdict's line as the server wrote it, without " [preauth]".
    message: str = ""
    #: The other lines of the connection, in order.
    context: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: The verdict line's number in the input (1-based): with the host, a stable identity.
    line_number: int = 0


@dataclass(slots=True)
class _Open:
    first_ts: float | None
    peer: tuple[str, int] | None = None
    local: tuple[str, int] | None = None
    lines: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        if len(self.lines) < MAX_CONTEXT_LINES:
            self.lines.append(message)


class SshdLogReader:
    """Turns log lines into findings; `year`, `zone` and `last_month` date lines that have
    neither (see `split_line`)."""

    def __init__(self, *, year: int, zone: tzinfo, last_month: int = 12) -> None:
        self.year = year
        self.zone = zone
        self.last_month = last_month
        self.lines = 0
        #: Lines of sshd or dropbear read, and connections forgotten at the bound.
        self.server_lines = 0
        self.forgotten = 0
        #: Verdicts of sshd before 6.8, which name no peer, with no "Connection from" line of
        #: their connection before them: not recorded (a record needs the peer).
        self.unaddressed = 0
        self._open: OrderedDict[tuple[object, ...], _Open] = OrderedDict()
        #: Lines without a pid or an address (``sshd -e``) waiting for the next addressed one.
        self._waiting: list[str] = []

    def receive_line(self, line: str) -> list[LogFinding]:
        """The findings this line completes (none, or one)."""
        self.lines += 1
        parsed = split_line(line, year=self.year, zone=self.zone, last_month=self.last_month)
        server = _server_of(parsed)
        if server is None:
            return []
        self.server_lines += 1
        message = parsed.message
        for suffix in _PREAUTH:
            if message.endswith(suffix):
                message = message[: -len(suffix)]
                break
        if server == "openssh":
            return self._openssh(parsed, message)
        return self._dropbear(parsed, message)

    # -- OpenSSH ----------------------------------------------------------------------------

    def _openssh(self, line: LogLine, message: str) -> list[LogFinding]:
        if (m := _CONNECTION_FROM.fullmatch(message)) and (peer := _peer(m["ip"], m["port"])):
            conn = self._start(line, peer)
            conn.local = _peer(m["lip"], m["lport"])
            conn.add(message)
            return []
        # sshd before 7.3 wrote its verdict with fatal(): "fatal: " comes first.
        text = message.removeprefix("fatal: ")
        if (m := _UNABLE.fullmatch(text)) and (listname := list_of_reason(m["reason"])):
            offer, cut = _names(m["offer"])
            if line.form != "bare" and len(line.message) >= SYSLOG_CUT_CHARS - len(" [preauth]"):
                cut = True
            return self._negotiation(
                line,
                message,
                who=m["who"].rsplit(" ", 1)[-1],
                port=m["port"],
                listname=listname,
                reason=m["reason"],
                their_offer=offer,
                cut=cut,
            )
        if (m := _CONNECTION_TO.fullmatch(text)) and (listname := list_of_reason(m["reason"])):
            return self._negotiation(
                line,
                message,
                who=m["who"],
                port=None,
                listname=listname,
                reason=m["reason"],
                notes=("sshd 6.8 and 6.9 do not log the peer's offer: their_offer is empty",),
            )
        if m := _CHOOSE.fullmatch(text):
            what = m["what"] or ("kex" if m["kex"] else "hostkey")
            reason = _OLD_REASONS[what]
            listname = list_of_reason(reason)
            assert listname is not None  # every reason of _OLD_REASONS names a list
            client, cut = _names(m["client"] or "")
            server, server_cut = _names(m["server"] or "")
            notes: tuple[str, ...] = ()
            if not m["what"]:
                notes = ("sshd before 6.8 logs no offer with this verdict: their_offer is empty",)
            return self._negotiation(
                line,
                message,
                who=None,
                port=None,
                listname=listname,
                reason=reason,
                their_offer=client,
                server_offer=server,
                cut=cut or server_cut,
                notes=notes,
            )
        if (m := _BANNER.fullmatch(message) or _OLD_BANNER.fullmatch(message)) and (
            peer := _peer(m["ip"], m["port"])
        ):
            ended = self._take(line, peer)
            return [
                self._finding(
                    line, ended, server="openssh", kind="banner", peer=peer, message=message
                )
            ]
        if (m := _ENDED.fullmatch(message)) and (peer := _peer(m["ip"], m["port"])):
            self._take(line, peer)
            return []
        if line.pid is None:
            if message.startswith("kex_exchange_identification: ") and len(self._waiting) < 4:
                self._waiting.append(message)
            return []
        known = self._open.get((line.host, line.pid))
        if known is not None:
            known.add(message)
        elif message.startswith("kex_exchange_identification: "):
            self._start(line, None).add(message)
        return []

    def _negotiation(
        self,
        line: LogLine,
        message: str,
        *,
        who: str | None,
        port: str | None,
        listname: str,
        reason: str,
        their_offer: tuple[str, ...] = (),
        server_offer: tuple[str, ...] = (),
        cut: bool = False,
        notes: tuple[str, ...] = (),
    ) -> list[LogFinding]:
        """The finding of an sshd verdict on `listname`. A line of sshd before 7.2 lacks the
        peer's port (before 6.8 its address too): they come from the connection's "Connection
        from" line under the same pid (LogLevel VERBOSE); without that, a line with an address
        gets port 0 and says so, and one without is counted in `unaddressed`, not recorded."""
        said = list(notes)
        joined = self._open.get(self._key(line, None)) if line.pid is not None else None
        known = joined.peer if joined is not None else None
        if port is not None:
            peer = _peer(who, port)
        elif known is not None and who in (None, known[0]):
            peer = known
        elif who is not None and (peer := _peer(who, "0")) is not None:
            said.append(
                'sshd before 7.2 does not log the peer\'s port, and no "Connection from" line '
                "of this connection came before (LogLevel VERBOSE): the port is shown as 0"
            )
        else:
            peer = None
        if peer is None:
            if who is None:
                self._open.pop(self._key(line, None), None)
                self.unaddressed += 1
            return []
        taken = self._take(line, peer)
        if cut:
            said.append(
                "the log line may be cut (syslog keeps 500 characters of an sshd line): "
                "the offers may be longer than logged"
            )
        if listname.endswith("client_to_server"):
            said.append(
                "sshd's line does not say the direction: client to server is the one sshd "
                "checks first (kex.c:kex_choose_conf)"
            )
        return [
            self._finding(
                line,
                taken,
                server="openssh",
                kind="negotiation",
                peer=peer,
                message=message,
                list=listname,
                reason=reason,
                their_offer=their_offer,
                server_offer=server_offer,
                notes=tuple(said),
            )
        ]

    # -- dropbear ---------------------------------------------------------------------------

    def _dropbear(self, line: LogLine, message: str) -> list[LogFinding]:
        if (m := _DROPBEAR_CHILD.fullmatch(message)) and (
            child := _peer(m["ip6"] or m["ip"], m["port"])
        ):
            self._start(line, child).add(message)
            return []
        m = _DROPBEAR_EXIT.fullmatch(message)
        peer = _peer(m["ip6"] or m["ip"], m["port"]) if m is not None else None
        if m is None or peer is None:
            return []
        conn = self._take(line, peer)
        algo = _DROPBEAR_ALGO.fullmatch(m["why"])
        if algo is not None and algo["algo"] in DROPBEAR_LISTS:
            listname = DROPBEAR_LISTS[algo["algo"]]
            return [
                self._finding(
                    line,
                    conn,
                    server="dropbear",
                    kind="negotiation",
                    peer=peer,
                    message=message,
                    list=listname,
                    reason=_reason_of(listname),
                    notes=("dropbear does not log the peer's offer: their_offer is empty",),
                )
            ]
        if m["why"].startswith("Incompatible remote version"):
            return [
                self._finding(
                    line, conn, server="dropbear", kind="banner", peer=peer, message=message
                )
            ]
        return []

    # -- joining ----------------------------------------------------------------------------

    def _key(self, line: LogLine, peer: tuple[str, int] | None) -> tuple[object, ...]:
        if line.pid is not None:
            return (line.host, line.pid)
        return (line.host, "peer", peer)

    def _start(self, line: LogLine, peer: tuple[str, int] | None) -> _Open:
        key = self._key(line, peer)
        conn = _Open(first_ts=line.ts, peer=peer)
        if line.pid is None:
            self._waiting = []  # an earlier connection's, whose verdict never came
        self._open.pop(key, None)
        self._open[key] = conn
        while len(self._open) > MAX_OPEN_CONNECTIONS:
            self._open.popitem(last=False)
            self.forgotten += 1
        return conn

    def _take(self, line: LogLine, peer: tuple[str, int]) -> _Open | None:
        """The connection `line` ends, forgotten from now on; None if its start was not seen."""
        conn = self._open.pop(self._key(line, peer), None)
        if conn is not None and conn.peer not in (None, peer):
            # A pid reused by a new connection whose first line was lost: not the same one.
            return None
        if line.pid is None and self._waiting:
            conn = conn or _Open(first_ts=line.ts, peer=peer)
            # They came after the connection's first line (`_start` drops any before it).
            conn.lines = (conn.lines + self._waiting)[:MAX_CONTEXT_LINES]
            self._waiting = []
        return conn

    def _finding(
        self,
        line: LogLine,
        conn: _Open | None,
        *,
        server: Server,
        kind: FindingKind,
        peer: tuple[str, int],
        message: str,
        list: str | None = None,
        reason: str | None = None,
        their_offer: tuple[str, ...] = (),
        server_offer: tuple[str, ...] = (),
        notes: tuple[str, ...] = (),
    ) -> LogFinding:
        local = conn.local if conn is not None else None
        return LogFinding(
            kind=kind,
            server=server,
            peer_ip=peer[0],
            peer_port=peer[1],
            local_ip=local[0] if local else None,
            local_port=local[1] if local else None,
            host=line.host,
            pid=line.pid,
            first_ts=conn.first_ts if conn is not None and conn.first_ts is not None else line.ts,
            ts=line.ts,
            list=list,
            reason=reason,
            their_offer=their_offer,
            server_offer=server_offer,
            message=message,
            context=tuple(conn.lines) if conn is not None else (),
            notes=notes,
            line_number=self.lines,
        )


def _peer(ip: str | None, port: str) -> tuple[str, int] | None:
    """An address and port from a line, or None when they are not one (a stranger's text)."""
    if ip is None:
        return None
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return None
    number = int(port)
    return (ip, number) if number <= MAX_PORT else None


def _server_of(line: LogLine) -> Server | None:
    """Whose line this is: by its program, or for a bare line (``sshd -e``) by its words."""
    program = line.program
    if program is not None:
        if program in OPENSSH_PROGRAMS:
            return "openssh"
        if program in DROPBEAR_PROGRAMS:
            return "dropbear"
        return None
    message = line.message
    if message.startswith(("Child connection from ", "Early exit", "Exit before auth", "Exit (")):
        return "dropbear"
    return "openssh"


def _names(offer: str) -> tuple[tuple[str, ...], bool]:
    """The comma list of an offer, bounded; True if something was cut."""
    names = offer.split(",", MAX_OFFER_NAMES)
    cut = len(names) > MAX_OFFER_NAMES
    names = names[:MAX_OFFER_NAMES]
    cut = cut or any(len(n) > MAX_NAME_CHARS for n in names)
    kept = tuple(n[:MAX_NAME_CHARS] for n in names)
    return (() if kept == ("",) else kept), cut


def _reason_of(listname: str) -> str:
    """OpenSSH's words (ssherr.c) for a list with no match, as the record's `reason` keeps them."""
    for kind in KIND.values():
        if listname in rfc_names_of(kind.kind):
            return kind.reason
    raise ValueError(listname)  # every key of DROPBEAR_LISTS names a list: a programming error
