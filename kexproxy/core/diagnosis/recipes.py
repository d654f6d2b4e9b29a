"""Ready-to-paste text for a fix: the ssh option, the ssh_config and sshd_config lines, warnings.

A fix is only useful if it can be applied as printed, so this module knows OpenSSH's syntax
(the ``+name`` append form and the releases without it, Compression as yes/no), Dropbear's
build-time choices, and what else a server change needs (a host key, a certificate).
"""

from __future__ import annotations

from collections.abc import Sequence

from kexproxy.core.catalogue import Algorithm, Catalogue
from kexproxy.core.diagnosis.software import Software
from kexproxy.core.limits import OPENSSH_MAX_PROPOSAL_ENTRIES
from kexproxy.core.lists import KIND
from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict

#: OpenSSH added the "+name" append syntax to its algorithm options in 7.0.
OPENSSH_PLUS_SYNTAX = "7.0"
#: OpenSSH's Compression option is yes/no, not a list: what each name needs (ssh_config(5)).
COMPRESSION_VALUES = {"none": "no", "zlib": "yes", "zlib@openssh.com": "yes"}
_KEYGEN_TYPE = {"rsa": "rsa", "dsa": "dsa", "ecdsa": "ecdsa", "ed25519": "ed25519"}
APPLY_NOTE = (
    "ssh and sshd keep the first value they read for each keyword: put the line above any "
    "existing line for the same keyword, or add the name to that line. '+name' appends to "
    "OpenSSH's default list, not to a list you have set."
)


def forms(
    side: Role, kind: str, name: str, *, server_ip: str, software: Software, current: Sequence[str]
) -> JSONDict:
    """Ready-to-paste text for adding `name` on `side` (compression is a yes/no in OpenSSH)."""
    option = KIND[kind].keyword
    if kind == "compression" and name not in COMPRESSION_VALUES:
        return {"ssh_option": None, "ssh_config": None, "sshd_config": None}
    if kind == "compression":
        value = COMPRESSION_VALUES[name]
        line = f"Compression {value}"
        dash_o = f"-oCompression={value}"
    else:
        legacy = software.predates(OPENSSH_PLUS_SYNTAX)
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


def warning(
    side: Role,
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


def _dropbear_advice(side: Role, kind: str, name: str, *, known: bool) -> str:
    """Dropbear has no algorithm options at run time except dbclient's -c and -m."""
    flag = {"cipher": "-c", "mac": "-m"}.get(kind)
    if side == "client" and flag and known:
        return f"The client says it is Dropbear: run dbclient {flag} {name} (it has no ssh_config)."
    built = "its build offers it" if known else "its observed build does not offer it"
    return (
        f"The {side} says it is Dropbear, which chooses {KIND[kind].label} algorithms when it is "
        f"built (localoptions.h) and {built}: rebuild or upgrade it."
    )


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


def combined_forms(tops: dict[Role, list[JSONDict]], server_ip: str) -> JSONDict:
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
