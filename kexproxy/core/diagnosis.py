"""The diagnosis of one handshake: how to fix a failure, and how strong a success is.

Theory of operation: `diagnose` reads a finished `SessionRecord` (both offers, the negotiated
set, the host key and group-exchange facts) and the algorithm catalogue, and returns the
record's ``diagnosis`` object. For a failed negotiation it proposes, per failing list, names
to add on one side that the other side already offers, so the fix needs nothing the peer
lacks; fixes are ranked by the catalogue's grade (a weak or broken one never above a good one,
and it says so in words), then post-quantum first, then fewer known issues, then the client
side (a local, reversible change) before the server, then the peer's own preference. For
every handshake it grades the negotiated set and gives the Terrapin, post-quantum, host key
size and group-exchange verdicts, plus a version hint from the offered lists alone, never
from the banner. Pure: no I/O beyond the catalogue's package data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from kexproxy.core.catalogue import (
    GRADE_ORDER,
    LIST_CATEGORY,
    Algorithm,
    Catalogue,
    Category,
    catalogue,
    version_key,
)
from kexproxy.core.limits import OPENSSH_MAX_PROPOSAL_ENTRIES
from kexproxy.core.negotiation import IMPLICIT_MAC
from kexproxy.core.record import JSONDict, SessionRecord

Side = Literal["client", "server"]
SIDES: tuple[Side, ...] = ("client", "server")

#: Fixes kept per failing kind and side: enough choice, not the peer's whole list.
MAX_FIXES_PER_SIDE = 4
#: Offered names not in the catalogue listed per side (a fuzzer may send thousands).
MAX_UNKNOWN = 20
#: Names a fix may paste into a command line or a config file: the characters OpenSSH's
#: own names use, at most RFC 4251's 64. A name with a space, quote, newline or ``$`` in it
#: could turn "add this algorithm" into another option or sshd_config line.
PASTABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
#: Names of the other side's offer looked at for fixes (a hostile offer can hold 50,000).
MAX_SCANNED = 256
#: RFC 8270 and NIST SP 800-57: a DH group or RSA key under this is under 112-bit security.
MIN_STRONG_BITS = 2048
#: Under this a DH group or RSA modulus is within reach of public factoring/DLP records.
MIN_BITS = 1024
#: OpenSSH added the "+name" append syntax to its algorithm options in 7.0.
OPENSSH_PLUS_SYNTAX = "7.0"
#: OpenSSH's Compression option is yes/no, not a list: what each name needs (ssh_config(5)).
COMPRESSION_VALUES = {"none": "no", "zlib": "yes", "zlib@openssh.com": "yes"}
#: Terrapin (CVE-2023-48795): the modes whose sequence-number trick works without strict KEX.
TERRAPIN_CVE = "CVE-2023-48795"

#: Per kind of list: the OpenSSH option, a label, and the record fields it covers.
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "kex": ("KexAlgorithms", "key exchange", ("kex",)),
    "host_key": ("HostKeyAlgorithms", "host key", ("host_key",)),
    "cipher": ("Ciphers", "cipher", ("cipher_c2s", "cipher_s2c")),
    "mac": ("MACs", "MAC", ("mac_c2s", "mac_s2c")),
    "compression": ("Compression", "compression", ("compression_c2s", "compression_s2c")),
}
_FIELD_LIST = {
    "kex": "kex_algorithms",
    "host_key": "server_host_key_algorithms",
    "cipher_c2s": "encryption_algorithms_client_to_server",
    "cipher_s2c": "encryption_algorithms_server_to_client",
    "mac_c2s": "mac_algorithms_client_to_server",
    "mac_s2c": "mac_algorithms_server_to_client",
    "compression_c2s": "compression_algorithms_client_to_server",
    "compression_s2c": "compression_algorithms_server_to_client",
}
_KEYGEN_TYPE = {"rsa": "rsa", "dsa": "dsa", "ecdsa": "ecdsa", "ed25519": "ed25519"}


def _worst(grades: Iterable[str | None]) -> str | None:
    present = [g for g in grades if g in ("good", "weak", "broken")]
    return max(present, key=GRADE_ORDER.__getitem__) if present else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Software:
    """What a banner claims, used only to know which names a side can implement."""

    name: str | None
    version: str | None

    @classmethod
    def from_banner(cls, banner: str | None) -> Software:
        if not banner:
            return cls(name=None, version=None)
        parts = banner.split("-", 2)
        software = parts[2].split(" ", 1)[0] if len(parts) == 3 else ""
        if software.startswith("OpenSSH_"):
            version = software[len("OpenSSH_") :].split("p", 1)[0]
            return cls(name="OpenSSH", version=version)
        if software.startswith("dropbear_"):
            return cls(name="Dropbear", version=software[len("dropbear_") :])
        return cls(name=software or None, version=None)

    @property
    def is_openssh(self) -> bool:
        return self.name == "OpenSSH" and self.version is not None

    @property
    def is_third_party(self) -> bool:
        """A named implementation whose code the catalogue does not follow (PuTTY, paramiko...)."""
        return self.name is not None and self.name not in ("OpenSSH", "Dropbear")

    def known_to_offer(self, algorithm: Algorithm | None, side: Side) -> bool:
        """Whether this side is known to be able to add the name without new code.

        Dropbear picks its algorithms when it is built, so a name outside the build seen
        (2022.83's defaults) likely needs a rebuild. Another named implementation (PuTTY,
        paramiko, a vendor's) offers, as a rule, all it implements and has just left this
        name out: it may well lack it. Such fixes rank after the others.
        """
        if self.name == "Dropbear":
            return algorithm is not None and side in algorithm.dropbear_default
        return not self.is_third_party

    def implements(self, algorithm: Algorithm | None, category: Category) -> bool:
        """False only when the catalogue knows this OpenSSH release lacks the name."""
        if algorithm is None or not self.is_openssh or self.version is None:
            return True
        if category == "compression" and algorithm.name == "zlib":
            return True  # sshd's refusal is a server-side question, handled by the caller
        return algorithm.in_openssh(self.version)


# -- verdicts on a negotiated set -----------------------------------------------------------


def _negotiated_parts(record: SessionRecord, cat: Catalogue) -> list[JSONDict]:
    negotiated = record.negotiated or {}
    parts: list[JSONDict] = []
    for field, rfc in _FIELD_LIST.items():
        name = negotiated.get(field)
        if not name or name == IMPLICIT_MAC:
            continue
        algorithm = cat.lookup_in_list(name, rfc)
        grade = (algorithm.grade if algorithm else None) or "unknown"
        parts.append(
            {
                "field": field,
                "name": name,
                "grade": grade,
                "reason": algorithm.reason if algorithm else "not in kexproxy's catalogue",
                "issues": cat.issue_texts(algorithm) if algorithm else [],
            }
        )
    return parts


def _part_reasons(parts: Sequence[JSONDict]) -> list[JSONDict]:
    """One finding per non-good negotiated algorithm, the two directions of a list said once."""
    out: list[JSONDict] = []
    seen: dict[tuple[str, str], JSONDict] = {}
    for part in parts:
        kind = "host_key" if part["field"] == "host_key" else part["field"].split("_")[0]
        if part["grade"] == "good":
            continue
        finding = seen.get((kind, part["name"]))
        if finding is not None:
            finding["fields"].append(part["field"])
            continue
        label = KINDS[kind][1]
        if part["grade"] == "unknown":
            text = f"{label} {part['name']} is not in the catalogue"
        else:
            why = "; ".join(part["issues"]) or part["reason"]
            text = f"{label} {part['name']} is {part['grade']}: {why}"
        finding = {"grade": part["grade"], "what": label, "name": part["name"], "text": text}
        finding["fields"] = [part["field"]]
        seen[(kind, part["name"])] = finding
        out.append(finding)
    return out


def terrapin(record: SessionRecord, cat: Catalogue) -> JSONDict:
    """Exposure to Terrapin: chacha20-poly1305, or CBC with an EtM MAC, without strict KEX."""
    strict = record.strict_kex
    in_effect = bool(strict.get("client")) and bool(strict.get("server"))
    negotiated = record.negotiated or {}
    modes: list[str] = []
    for direction in ("c2s", "s2c"):
        cipher = negotiated.get(f"cipher_{direction}")
        mac = negotiated.get(f"mac_{direction}")
        c_alg = cat.lookup(cipher, "cipher") if cipher else None
        m_alg = cat.lookup(mac, "mac") if mac and mac != IMPLICIT_MAC else None
        if cipher == "chacha20-poly1305@openssh.com":
            modes.append(cipher)
        elif c_alg is not None and c_alg.cbc and m_alg is not None and m_alg.etm:
            modes.append(f"{cipher} with {mac}")
    modes = list(dict.fromkeys(modes))
    one_sided = ""
    if bool(strict.get("client")) != bool(strict.get("server")):
        who = "client" if strict.get("client") else "server"
        one_sided = f" (only the {who} offers strict KEX; both must)"
    if not negotiated.get("cipher_c2s") and not negotiated.get("cipher_s2c"):
        exposed: bool | None = None
        reason = "no cipher was negotiated"
    elif not modes:
        exposed = False
        reason = "no affected mode negotiated (only chacha20-poly1305 and CBC with EtM are)"
    elif in_effect:
        exposed = False
        reason = f"{', '.join(modes)} is affected, but strict KEX is in effect on both sides"
    else:
        exposed = True
        reason = f"{', '.join(modes)} without strict KEX{one_sided}: a man in the middle can drop the first encrypted messages ({TERRAPIN_CVE})"
    return {
        "cve": TERRAPIN_CVE,
        "exposed": exposed,
        "strict_kex": in_effect,
        "affected_modes": modes,
        "reason": reason,
    }


def post_quantum(record: SessionRecord, cat: Catalogue) -> JSONDict:
    """Whether the key exchange resists a future quantum computer, and whether it could."""
    offers: dict[str, list[str]] = {}
    for side, kexinit in (("client", record.client_kexinit), ("server", record.server_kexinit)):
        names = (kexinit or {}).get("kex_algorithms", [])
        offers[side] = [n for n in names if (a := cat.lookup(n, "kex")) and a.post_quantum]
    common = [n for n in offers["client"] if n in offers["server"]]
    kex = (record.negotiated or {}).get("kex")
    algorithm = cat.lookup(kex, "kex") if kex else None
    pq: bool | None = None if kex is None or algorithm is None else algorithm.post_quantum
    if kex is None:
        reason = "no key exchange was negotiated"
    elif algorithm is None:
        reason = f"{kex} is not in the catalogue"
    elif pq:
        reason = f"{kex} is a post-quantum hybrid"
    elif common:
        reason = f"{kex} is classical although both sides offer {common[0]}: the client lists {kex} first"
    elif not offers["server"] and not offers["client"]:
        reason = f"{kex} is classical; neither side offers a post-quantum method"
    else:
        lacking = "server" if not offers["server"] else "client"
        reason = f"{kex} is classical; the {lacking} offers no post-quantum method"
    return {
        "post_quantum": pq,
        "kex": kex,
        "client_offers": offers["client"],
        "server_offers": offers["server"],
        "reason": reason,
    }


def host_key_size(record: SessionRecord) -> JSONDict | None:
    """RSA under 2048 bits is weak (SP 800-57: under 112-bit security), under 1024 broken."""
    key = record.host_key
    if not key:
        return None
    key_type = str(key.get("key_type") or "")
    bits = key.get("bits")
    grade: str | None = "good"
    reason = "size fixed by the algorithm"
    if key_type.startswith("rsa"):
        if not isinstance(bits, int):
            grade, reason = None, "RSA key size not decoded"
        elif bits < MIN_BITS:
            grade, reason = "broken", f"{bits}-bit RSA: factorable with public tools"
        elif bits < MIN_STRONG_BITS:
            grade, reason = "weak", f"{bits}-bit RSA: under 112-bit security (NIST SP 800-57)"
        else:
            reason = f"{bits}-bit RSA"
    elif key_type.startswith("dsa"):
        grade, reason = "broken", f"{bits or 1024}-bit DSA with SHA-1"
    elif not key_type:
        grade, reason = None, "host key type not recognised"
    return {
        "algorithm": key.get("algorithm"),
        "key_type": key_type or None,
        "bits": bits,
        "grade": grade,
        "reason": reason,
    }


def dh_gex(record: SessionRecord) -> JSONDict | None:
    """The group-exchange sizes: what the client asked for and the modulus the server sent."""
    gex = record.dh_gex
    if not gex:
        return None
    grade: str | None
    if "transient_rsa_bits" in gex:
        bits = gex.get("transient_rsa_bits")
        grade = None if not isinstance(bits, int) else "weak" if bits < MIN_STRONG_BITS else "good"
        return {
            "kind": "rsa",
            "transient_rsa_bits": bits,
            "grade": grade,
            "reason": f"transient RSA key of {bits} bits (RFC 4432)",
        }
    request = gex.get("request")
    p_bits = gex.get("p_bits")
    notes: list[str] = []
    if not isinstance(p_bits, int):
        grade, reason = None, "the server's group was not seen"
    elif p_bits < MIN_BITS:
        grade, reason = "broken", f"{p_bits}-bit group: within reach of public discrete-log records"
    elif p_bits < MIN_STRONG_BITS:
        grade, reason = (
            "weak",
            f"{p_bits}-bit group: under RFC 8270's 2048-bit minimum (under 112-bit security)",
        )
    else:
        grade, reason = "good", f"{p_bits}-bit group"
    if isinstance(request, dict):
        low, high = request.get("min"), request.get("max")
        if isinstance(low, int) and low < MIN_STRONG_BITS:
            notes.append(f"the client accepts groups from {low} bits (RFC 8270: at least 2048)")
        if isinstance(p_bits, int) and (
            (isinstance(low, int) and p_bits < low) or (isinstance(high, int) and p_bits > high)
        ):
            notes.append("the server's group is outside the range the client asked for")
    return {
        "kind": "gex",
        "request": request,
        "p_bits": p_bits,
        "grade": grade,
        "reason": reason,
        "notes": notes,
    }


# -- fixes for a failure --------------------------------------------------------------------


def _kind_of(rfc_list: str) -> str:
    category = LIST_CATEGORY[rfc_list]
    return str(category)


def _forms(
    side: Side, kind: str, name: str, *, server_ip: str, software: Software, current: Sequence[str]
) -> JSONDict:
    """Ready-to-paste text for adding `name` on `side` (compression is a yes/no in OpenSSH)."""
    option = KINDS[kind][0]
    if kind == "compression" and name not in COMPRESSION_VALUES:
        return {"ssh_option": None, "ssh_config": None, "sshd_config": None}
    if kind == "compression":
        value = COMPRESSION_VALUES[name]
        line = f"Compression {value}"
        dash_o = f"-oCompression={value}"
    else:
        legacy = software.version is not None and _older(software.version, OPENSSH_PLUS_SYNTAX)
        listed = ",".join(n for n in current if n) + "," + name if legacy else f"+{name}"
        line = f"{option} {listed}"
        dash_o = f"-o{option}={listed}"
    if side == "client":
        return {
            "ssh_option": dash_o,
            "ssh_config": f"Host {server_ip}\n    {line}",
            "sshd_config": None,
        }
    return {"ssh_option": None, "ssh_config": None, "sshd_config": line}


def _warning(
    side: Side,
    kind: str,
    algorithm: Algorithm | None,
    name: str,
    *,
    cat: Catalogue,
    software: Software,
    server_list_length: int,
    held_key: bool = False,
) -> str | None:
    words: list[str] = []
    if algorithm is None:
        words.append(
            f"{name} is not in kexproxy's catalogue: find out what it is before enabling it."
        )
    elif algorithm.grade == "weak":
        why = "; ".join(cat.issue_texts(algorithm)) or algorithm.reason
        words.append(f"{name} is weak ({why}): this makes the handshake work, not safe.")
    elif algorithm.grade == "broken":
        why = "; ".join(cat.issue_texts(algorithm)) or algorithm.reason
        words.append(f"{name} is broken ({why}): use it only to reach the host and upgrade it.")
    if side == "server" and kind == "host_key" and algorithm is not None and algorithm.certificate:
        words.append(
            "sshd offers a certificate algorithm only with a HostCertificate signed by a CA the "
            "client trusts."
        )
    elif side == "server" and kind == "host_key" and held_key:
        words.append(
            f"It uses the {algorithm.key_type if algorithm else ''} host key sshd already has."
        )
    elif side == "server" and kind == "host_key":
        key_type = (algorithm.key_type if algorithm else None) or "matching"
        keygen = _KEYGEN_TYPE.get(key_type)
        hint = f" (ssh-keygen -t {keygen} -f /etc/ssh/ssh_host_{keygen}_key)" if keygen else ""
        words.append(
            f"sshd offers a host key algorithm only when it has a host key of that type: "
            f"make sure a HostKey line names a {key_type} key{hint}."
        )
    if side == "server" and kind == "compression" and name == "zlib":
        words.append("OpenSSH's sshd has had no pre-authentication zlib since 7.4.")
    if side == "server" and server_list_length > OPENSSH_MAX_PROPOSAL_ENTRIES:
        words.append(
            f"The server would offer {server_list_length} names and OpenSSH reads only the "
            f"first {OPENSSH_MAX_PROPOSAL_ENTRIES}: remove some, or the added one goes unseen."
        )
    if kind == "compression" and name not in COMPRESSION_VALUES:
        words.append(f"OpenSSH has no option that offers compression {name}.")
    if software.name == "Dropbear":
        words.append(
            _dropbear_advice(side, kind, name, known=software.known_to_offer(algorithm, side))
        )
    elif software.is_third_party:
        config = "ssh -o and ssh_config are" if side == "client" else "sshd_config is"
        words.append(
            f"The {side} says it is {software.name} and did not offer {name}: it may not "
            f"implement it (check its documentation or upgrade it); where it does, enable it "
            f"in its own settings ({config} OpenSSH syntax)."
        )
    elif software.name and not software.is_openssh:
        config = "ssh_option and ssh_config" if side == "client" else "sshd_config"
        words.append(
            f"The {side} says it is {software.name}: {config} is OpenSSH syntax; enable "
            f"{name} in its own settings."
        )
    return " ".join(words) or None


def _dropbear_advice(side: Side, kind: str, name: str, *, known: bool) -> str:
    """Dropbear has no algorithm options at run time except dbclient's -c and -m."""
    flag = {"cipher": "-c", "mac": "-m"}.get(kind)
    if side == "client" and flag and known:
        return f"The client says it is Dropbear: run dbclient {flag} {name} (it has no ssh_config)."
    built = "its build offers it" if known else "its observed build does not offer it"
    return (
        f"The {side} says it is Dropbear, which chooses {KINDS[kind][1]} algorithms when it is "
        f"built (localoptions.h) and {built}: rebuild or upgrade it."
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    side: Side
    kind: str
    name: str
    algorithm: Algorithm | None
    position: int
    #: Work beyond the config line: 0 none, 1 a new host key or a rebuild, 2 a certificate.
    cost: int = 0

    def key(self, cat: Catalogue) -> tuple[int, int, int, int, int, int]:
        grade = (self.algorithm.grade if self.algorithm else None) or "unknown"
        pq = 0 if self.algorithm is not None and self.algorithm.post_quantum else 1
        issues = cat.counted_issues(self.algorithm) if self.algorithm else 9
        side = 0 if self.side == "client" else 1
        return (GRADE_ORDER[grade], pq, self.cost, issues, side, self.position)


def _offer(kexinit: JSONDict | None, rfc_list: str) -> list[str]:
    names = (kexinit or {}).get(rfc_list, [])
    return [n for n in names if isinstance(n, str)]


def _candidates(
    side: Side,
    kind: str,
    lists: Sequence[str],
    record: SessionRecord,
    *,
    cat: Catalogue,
    software: Software,
) -> list[_Candidate]:
    """Names the other side offers on every failing list of `kind` that `side` could add."""
    other = record.server_kexinit if side == "client" else record.client_kexinit
    offers = [_offer(other, rfc) for rfc in lists]
    category = LIST_CATEGORY[lists[0]]
    held = _held_key_types(record, cat) if side == "server" and kind == "host_key" else None
    out: list[_Candidate] = []
    also = [frozenset(offer) for offer in offers[1:]]
    seen: set[str] = set()
    # A hostile peer may offer tens of thousands of names: the ones a fix could use are
    # among the first (OpenSSH itself reads only 40 of a server's list).
    for position, name in enumerate(offers[0][:MAX_SCANNED]):
        if not name or name in seen or cat.is_marker(name) or any(name not in o for o in also):
            continue
        if not PASTABLE.fullmatch(name):
            continue  # never a config line or a shell word made of a stranger's bytes
        seen.add(name)
        algorithm = cat.lookup(name, category)
        if not software.implements(algorithm, category):
            continue
        if (
            side == "server"
            and name == "zlib"
            and software.version is not None
            and not _older(software.version, "7.4")
        ):
            continue  # sshd dropped pre-authentication compression in 7.4
        cost = 0 if software.known_to_offer(algorithm, side) else 1
        if held is not None:
            cost = max(cost, _host_key_cost(algorithm, held))
        out.append(_Candidate(side, kind, name, algorithm, position, cost))
    return out


def _held_key_types(record: SessionRecord, cat: Catalogue) -> set[str]:
    """Key types the server evidently has, from the plain host key algorithms it offers."""
    held: set[str] = set()
    for name in _offer(record.server_kexinit, "server_host_key_algorithms"):
        algorithm = cat.lookup(name, "host_key")
        if algorithm is not None and not algorithm.certificate and algorithm.key_type:
            held.add(algorithm.key_type)
    return held


def _host_key_cost(algorithm: Algorithm | None, held: set[str]) -> int:
    if algorithm is None or algorithm.certificate:
        return 2
    return 0 if algorithm.key_type in held else 1


def _older(version: str, than: str) -> bool:
    return version_key(version) < version_key(than)


def _real_fix(
    side: Side, kind: str, candidates: Sequence[_Candidate], software: Software
) -> str | None:
    """When every name `side` could add is broken (or none exists), the other side is too old."""
    label = KINDS[kind][1]
    old = "server" if side == "client" else "client"
    grades = {(c.algorithm.grade if c.algorithm else "unknown") for c in candidates}
    if not candidates:
        return (
            f"The {side} can add none of the {old}'s {label} algorithms"
            f"{' (its OpenSSH release lacks them)' if software.is_openssh else ''}: "
            f"upgrading the {old} is the real fix."
        )
    if grades == {"broken"}:
        names = ", ".join(c.name for c in candidates[:3])
        return (
            f"The only {label} algorithms the {old} offers that the {side} could add are broken "
            f"({names}): upgrading the {old} is the real fix."
        )
    return None


def fixes(
    record: SessionRecord, cat: Catalogue
) -> tuple[list[JSONDict], list[str], JSONDict | None]:
    """Ranked fixes per failing kind, the "upgrade" advice, and the combined forms."""
    by_kind: dict[str, list[str]] = {}
    for failure in record.failures:
        by_kind.setdefault(_kind_of(failure["list"]), []).append(failure["list"])
    software: dict[Side, Software] = {
        "client": Software.from_banner(record.client_banner),
        "server": Software.from_banner(record.server_banner),
    }
    server_ip = str(record.server.get("ip", "<server>"))
    out: list[JSONDict] = []
    advice: list[str] = []
    tops: dict[Side, list[JSONDict]] = {"client": [], "server": []}
    units = [(kind, group) for kind, lists in by_kind.items() for group in _groups(record, lists)]
    for kind, lists in units:
        ranked: list[_Candidate] = []
        for side in SIDES:
            found = _candidates(side, kind, lists, record, cat=cat, software=software[side])
            found.sort(key=lambda c: c.key(cat))
            ranked += found[:MAX_FIXES_PER_SIDE]
            real = _real_fix(side, kind, found, software[side])
            if real:
                advice.append(real)
        ranked.sort(key=lambda c: c.key(cat))
        for rank, cand in enumerate(ranked, 1):
            mine = record.client_kexinit if cand.side == "client" else record.server_kexinit
            current = _offer(mine, lists[0])
            fix: JSONDict = {
                "rank": rank,
                "side": cand.side,
                "list": lists[0],
                "lists": list(lists),
                "add": cand.name,
                "grade": (cand.algorithm.grade if cand.algorithm else None) or "unknown",
                "post_quantum": bool(cand.algorithm and cand.algorithm.post_quantum),
                "reason": cand.algorithm.reason
                if cand.algorithm
                else "not in kexproxy's catalogue",
                **_forms(
                    cand.side,
                    kind,
                    cand.name,
                    server_ip=server_ip,
                    software=software[cand.side],
                    current=current,
                ),
                "warning": _warning(
                    cand.side,
                    kind,
                    cand.algorithm,
                    cand.name,
                    cat=cat,
                    software=software[cand.side],
                    server_list_length=len(current) + 1 if cand.side == "server" else 0,
                    held_key=cand.side == "server" and kind == "host_key" and cand.cost == 0,
                ),
            }
            out.append(fix)
        for role in SIDES:
            best = next(
                (
                    f
                    for f in out
                    if f["side"] == role
                    and f["lists"] == list(lists)
                    and (f["ssh_config"] or f["sshd_config"])
                ),
                None,
            )
            if best is not None:
                tops[role].append(best)
    combined = _combined(tops, server_ip) if len(units) > 1 else None
    return out, list(dict.fromkeys(advice)), combined


def _groups(record: SessionRecord, lists: Sequence[str]) -> list[list[str]]:
    """Failing lists of one kind fixed together: both directions at once when each side
    offers the same names both ways (OpenSSH sets both with one option), else one by one."""
    for kexinit in (record.client_kexinit, record.server_kexinit):
        offers = [_offer(kexinit, rfc) for rfc in lists]
        if any(offer != offers[0] for offer in offers[1:]):
            return [[rfc] for rfc in lists]
    return [list(lists)]


def _merged_lines(lines: Sequence[str]) -> list[str]:
    """``Ciphers +a`` and ``Ciphers +b`` become ``Ciphers +a,b``: OpenSSH keeps one value."""
    merged: dict[str, str] = {}
    for line in lines:
        keyword, _, value = line.partition(" ")
        if keyword not in merged:
            merged[keyword] = value
        elif value.startswith("+") and merged[keyword].startswith("+"):
            merged[keyword] += "," + value[1:]
    return [f"{keyword} {value}" for keyword, value in merged.items()]


def _combined(tops: dict[Side, list[JSONDict]], server_ip: str) -> JSONDict:
    """One paste per side applying the top fix of every failing list."""
    out: JSONDict = {}
    if tops["client"]:
        lines = _merged_lines([f["ssh_config"].split("\n", 1)[1].strip() for f in tops["client"]])
        out["client"] = {
            "ssh_option": " ".join(f"-o{line.replace(' ', '=', 1)}" for line in lines),
            "ssh_config": f"Host {server_ip}\n" + "\n".join(f"    {line}" for line in lines),
        }
    if tops["server"]:
        out["server"] = {
            "sshd_config": "\n".join(_merged_lines([f["sshd_config"] for f in tops["server"]]))
        }
    return out


APPLY_NOTE = (
    "ssh and sshd keep the first value they read for each keyword: put the line above any "
    "existing line for the same keyword, or add the name to that line. '+name' appends to "
    "OpenSSH's default list, not to a list you have set."
)
VERSION_CAVEAT = (
    "from the offered lists only, never the banner; a hint, not a version claim: "
    "distributions backport changes and configurations change lists"
)


# -- the whole diagnosis --------------------------------------------------------------------


def _lists_for_hint(kexinit: JSONDict | None, role: Side) -> dict[Category, list[str]]:
    direction = "client_to_server" if role == "client" else "server_to_client"
    return {
        "kex": _offer(kexinit, "kex_algorithms"),
        "host_key": _offer(kexinit, "server_host_key_algorithms"),
        "cipher": _offer(kexinit, f"encryption_algorithms_{direction}"),
        "mac": _offer(kexinit, f"mac_algorithms_{direction}"),
    }


def _unknown(kexinit: JSONDict | None, cat: Catalogue) -> list[str]:
    out: list[str] = []
    for rfc in _FIELD_LIST.values():
        for name in _offer(kexinit, rfc):
            if name and cat.lookup_in_list(name, rfc) is None and name not in out:
                out.append(name)
                if len(out) >= MAX_UNKNOWN:
                    return out
    return out


def _finding(grade: str, what: str, reason: str) -> JSONDict:
    return {"grade": grade, "what": what, "name": None, "text": f"{what}: {reason}"}


def diagnose(record: SessionRecord, cat: Catalogue | None = None) -> JSONDict:
    """The record's ``diagnosis`` object (see docs/session-record.md)."""
    cat = cat or catalogue()
    parts = _negotiated_parts(record, cat)
    verdicts = {
        "terrapin": terrapin(record, cat),
        "post_quantum": post_quantum(record, cat),
        "host_key_size": host_key_size(record),
        "dh_gex": dh_gex(record),
    }
    complete = bool(record.negotiated) and not record.failures
    grade: str | None = None
    reasons: list[str] = []
    findings: list[JSONDict] = []
    if complete:
        findings = _part_reasons(parts)
        for key, label in (("host_key_size", "host key size"), ("dh_gex", "DH group size")):
            verdict = verdicts[key]
            if verdict is not None and verdict.get("grade") in ("weak", "broken"):
                findings.append(_finding(verdict["grade"], label, verdict["reason"]))
        exposure = verdicts["terrapin"]
        if exposure is not None and exposure["exposed"]:
            findings.append(_finding("weak", "Terrapin", exposure["reason"]))
        grade = _worst([p["grade"] for p in parts] + [f["grade"] for f in findings])
        findings.sort(key=lambda f: -GRADE_ORDER.get(f["grade"], 0))
        reasons = [f["text"] for f in findings]
    fix_list: list[JSONDict] = []
    advice: list[str] = []
    combined: JSONDict | None = None
    if record.failures:
        fix_list, advice, combined = fixes(record, cat)
    hints: JSONDict = {"caveat": VERSION_CAVEAT}
    for role in SIDES:
        kexinit = record.client_kexinit if role == "client" else record.server_kexinit
        hints[role] = (
            cat.version_hint(_lists_for_hint(kexinit, role), role).to_dict() if kexinit else None
        )
    out: JSONDict = {
        "grade": grade,
        "reasons": reasons,
        "weakest": [{k: f[k] for k in ("grade", "what", "name")} for f in findings],
        "algorithms": parts,
        "fixes": fix_list,
        "real_fix": advice,
        "combined": combined,
        "apply_note": APPLY_NOTE if fix_list else None,
        **verdicts,
        "version_hint": hints,
        "unknown": {
            "client": _unknown(record.client_kexinit, cat),
            "server": _unknown(record.server_kexinit, cat),
        },
    }
    return out
