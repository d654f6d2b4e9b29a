"""Recipe steps in each peer's own syntax: the text one side's user pastes, and where.

A step is only useful if it works as printed on the software that will read it, so each
implementation gets its own writer: OpenSSH's ``-o`` options and config lines (with the
``+name`` form since 7.0, Compression as yes/no, host keys), Dropbear's ``dbclient -c/-m``
and its build-time macros, and, for everything else, the templates of its capability file
(``data/implementations/<key>.toml``). Software nobody recognises gets a `note` in plain
words, never another implementation's syntax. Every name here already passed the fixes'
PASTABLE check, so no stranger's byte becomes a config line or a shell word.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kexproxy.core.catalogue import Catalogue, Category
from kexproxy.core.implementations import Peer, StepKind
from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict

#: OpenSSH added the "+name" append syntax to its algorithm options in 7.0.
OPENSSH_PLUS_SYNTAX = "7.0"
#: OpenSSH's Compression option is yes/no, not a list: what each name needs (ssh_config(5)).
COMPRESSION_VALUES = {"none": "no", "zlib": "yes", "zlib@openssh.com": "yes"}
#: The suffix of OpenSSH's certificate host key names (PROTOCOL.certkeys).
CERT_SUFFIX = "-cert-v01@openssh.com"
#: ssh-keygen's -t for each host key type, with the size OpenSSH's own keygen uses for RSA.
KEYGEN = {"rsa": "rsa -b 3072", "ecdsa": "ecdsa", "ed25519": "ed25519", "dsa": "dsa"}
#: What a template in an implementation file may ask for (see `_values` for each meaning).
PLACEHOLDERS: frozenset[str] = frozenset(
    (
        "option",
        "names",
        "names_space",
        "names_py",
        "names_go",
        "names_tokens",
        "add",
        "add_tokens",
        "tokens",
        "disabled_py",
        "host",
        "port",
    )
)
_PLACEHOLDER = re.compile(r"\{(" + "|".join(sorted(PLACEHOLDERS)) + r")\}")
_LABEL = {
    "kex": "key exchange",
    "host_key": "host key",
    "cipher": "cipher",
    "mac": "MAC",
    "compression": "compression",
}


@dataclass(frozen=True, slots=True)
class Change:
    """One list's change on one side: the names to add and what that side offers now."""

    category: Category
    add: tuple[str, ...]
    current: tuple[str, ...]
    #: Host key types the names need that the server has no key for (server, host_key only).
    new_keys: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.current + self.add))


@dataclass(frozen=True, slots=True)
class Target:
    """Where the client connects, for commands and ``Host`` blocks (never a stranger's text)."""

    host: str
    port: int | None

    @classmethod
    def of(cls, server: Mapping[str, Any]) -> Target:
        raw = server.get("ip")
        try:
            host = str(ipaddress.ip_address(str(raw)))
        except ValueError:
            host = "SERVER"
        port = server.get("port")
        return cls(host, port if isinstance(port, int) and 0 < port < 65536 else None)


@dataclass(slots=True)
class Written:
    """One side's part of a recipe; `ok` is False when its software cannot be told how."""

    steps: list[JSONDict] = field(default_factory=list)
    command: str | None = None
    persist: JSONDict | None = None
    notes: list[str] = field(default_factory=list)
    ok: bool = True


def _step(role: Role, peer: Peer, kind: StepKind, text: str) -> JSONDict:
    return {"side": role, "software": peer.label, "kind": kind, "text": text}


def write(
    peer: Peer,
    role: Role,
    changes: Sequence[Change],
    *,
    target: Target,
    cat: Catalogue,
) -> Written:
    """The steps that make `role`'s software add every change's names."""
    impl = peer.implementation
    # OpenSSH with no release is known from its own log ("Unable to negotiate ... Their
    # offer:", sshpkt_fatal since OpenSSH 7.0): every such release takes the "+" form.
    if impl is not None and impl.derived == "openssh" and (peer.version or impl.key == "openssh"):
        return (_openssh_client if role == "client" else _openssh_server)(
            peer, changes, target, cat
        )
    if impl is not None and impl.key == "dropbear":
        return _dropbear(peer, role, changes, target, cat)
    templates = impl.extra.get("template", {}).get(role) if impl is not None else None
    if impl is not None and templates:
        return _templated(peer, role, changes, target, templates)
    return _plain(peer, role, changes)


def _openssh_client(
    peer: Peer, changes: Sequence[Change], target: Target, cat: Catalogue
) -> Written:
    out = Written()
    lines = _openssh_lines(peer, "client", changes, cat)
    if lines is None:
        return Written(ok=False, notes=["OpenSSH has no option that offers this compression"])
    windows = _windows_notes(peer, "client")
    for line in lines:
        keyword, _, value = line.partition(" ")
        # PowerShell splits an unquoted a,b into two arguments: Windows gets it quoted.
        option = f'-o "{keyword}={value}"' if windows else f"-o{keyword}={value}"
        out.steps.append(_step("client", peer, "ssh_option", option))
    port = f" -p {target.port}" if target.port not in (None, 22) else ""
    out.command = "ssh " + " ".join(s["text"] for s in out.steps) + f"{port} {target.host}"
    block = f"Host {target.host}\n" + "\n".join(f"    {line}" for line in lines)
    out.persist = _step("client", peer, "ssh_config", block)
    out.notes += windows or [
        "ssh keeps the first value it reads for each keyword: if your command line or "
        "~/.ssh/config already sets one, add the name there instead."
    ]
    return out


def _windows_notes(peer: Peer, role: Role) -> list[str]:
    """Where Windows OpenSSH keeps its files and how it restarts, from its own file."""
    impl = peer.implementation
    notes = impl.extra.get("template_note", {}).get(role, {}) if impl is not None else {}
    return (
        [str(notes["all"])] if impl is not None and impl.key != "openssh" and "all" in notes else []
    )


def _openssh_server(
    peer: Peer, changes: Sequence[Change], target: Target, cat: Catalogue
) -> Written:
    out = Written()
    windows = _windows_notes(peer, "server")
    if windows and any(change.new_keys for change in changes):
        return Written(ok=False, notes=["no tested host key step for this sshd's platform"])
    for change in changes:
        for key_type in change.new_keys:
            path = f"/etc/ssh/ssh_host_{key_type}_key"
            # Never over an existing key: a new host key looks like an attack to every client.
            keygen = f"ssh-keygen -q -t {KEYGEN.get(key_type, key_type)} -N '' -f {path}"
            text = f"[ -e {path} ] || {keygen}\nHostKey {path}"
            out.steps.append(_step("server", peer, "host_key", text))
    lines = _openssh_lines(peer, "server", changes, cat)
    if lines is None:
        return Written(ok=False, notes=["OpenSSH has no option that offers this compression"])
    out.steps += [_step("server", peer, "sshd_config", line) for line in lines]
    if any(change.new_keys for change in changes):
        # The wire cannot tell a missing key from a HostKeyAlgorithms line that hides it,
        # so the recipe both makes sure of the key and names the algorithm.
        out.notes.append(
            "With no HostKey line, sshd loads every /etc/ssh/ssh_host_*_key and needs none "
            "added; with HostKey lines, add the new one beside them, or sshd loads only those."
        )
    out.notes += windows or [
        "sshd keeps the first value it reads for each keyword: if sshd_config (or a file it "
        "Includes) already sets one, add the name to that line instead; then reload sshd."
    ]
    return out


def _openssh_lines(
    peer: Peer, role: Role, changes: Sequence[Change], cat: Catalogue
) -> list[str] | None:
    """One config line per keyword (``Ciphers +a,b``), merged across directions."""
    impl = peer.implementation
    assert impl is not None
    legacy = peer.predates(OPENSSH_PLUS_SYNTAX)
    merged: dict[str, list[str]] = {}
    for change in changes:
        keyword = impl.option.get((role, change.category))
        if keyword is None:
            return None
        if change.category == "compression":
            values = {COMPRESSION_VALUES.get(n) for n in change.add}
            if None in values or len(values) != 1:
                return None
            merged[keyword] = [values.pop() or ""]
            continue
        add = list(change.add)
        names = merged.setdefault(keyword, list(change.current) if legacy else [])
        names += [n for n in add if n not in names]
    return [
        f"{keyword} {names[0]}"
        if keyword == "Compression"
        else f"{keyword} {'' if legacy else '+'}{','.join(names)}"
        for keyword, names in merged.items()
    ]


def _dropbear(
    peer: Peer, role: Role, changes: Sequence[Change], target: Target, cat: Catalogue
) -> Written:
    """dbclient chooses ciphers and MACs at run time; everything else is chosen at build
    time, and a server offers a host key algorithm only for a host key it holds."""
    out = Written()
    impl = peer.implementation
    assert impl is not None
    flags: list[str] = []
    macros: list[str] = []
    keys: list[str] = []
    for change in changes:
        if role == "server" and change.category == "host_key":
            tokens = impl.token.get("host_key", {})
            # A default build has every macro some default name needs (DROPBEAR_ECDSA
            # covers each curve): only a name needing another macro needs a rebuild.
            default = peer.defaults("server", "host_key") or ()
            on = {m for n in default for m in tokens.get(n, "").split()}
            for name in change.add:
                key = _dropbear_key(name, cat)
                if key is None or name not in tokens:
                    return Written(ok=False, notes=[f"no Dropbear host key offers {name}"])
                keys.append(key)
                macros += [m for m in tokens[name].split() if m not in on and m not in macros]
            continue
        flag = {"cipher": "-c", "mac": "-m"}.get(change.category)
        built = peer.can_offer(change.category)
        defaults = peer.defaults(role, change.category) or ()
        if role == "client" and flag and all(n in defaults for n in change.add):
            # -c and -m replace the build's list: what it offered stays, the names join it.
            flags.append(f"{flag} {','.join(change.names)}")
            continue
        tokens = impl.token.get(change.category, {})
        for name in change.add:
            if (built is not None and name not in built) or name not in tokens:
                return Written(ok=False, notes=[f"Dropbear cannot be built with {name}"])
            macros += [m for m in tokens[name].split() if m not in macros]
    for flag in flags:
        out.steps.append(_step(role, peer, "dbclient_option", flag))
    for key in dict.fromkeys(keys):
        out.steps.append(_step(role, peer, "host_key", key))
    if keys:
        out.notes.append(
            "Then start dropbear with -r and the new key's file beside its other -r options "
            "(with no -r at all it reads only /etc/dropbear/dropbear_{dss,rsa,ecdsa,ed25519}"
            "_host_key); it offers each host key algorithm only for a key it holds."
        )
    if macros:
        text = "\n".join(
            f"#define {m.partition('=')[0]} {m.partition('=')[2] or '1'}" for m in macros
        )
        out.steps.append(_step(role, peer, "dropbear_build", text))
        out.notes.append(
            "Put the #define lines in localoptions.h in Dropbear's build directory, then run "
            "make clean and make, and reinstall it"
            + (" and restart dropbear." if role == "server" else ".")
        )
    if flags and not macros and role == "client":
        port = f" -p {target.port}" if target.port not in (None, 22) else ""
        out.command = f"dbclient {' '.join(flags)}{port} {target.host}"
    return out


#: dropbearkey's type and size for each host key algorithm a Dropbear server can offer.
_DROPBEAR_KEYS = {
    "ed25519": ("ed25519", ""),
    "rsa": ("rsa", " -s 3072"),
    "dsa": ("dss", ""),
}


def _dropbear_key(name: str, cat: Catalogue) -> str | None:
    """The dropbearkey line that makes a key for `name`, never over an existing file."""
    algorithm = cat.lookup(name, "host_key")
    if algorithm is None or algorithm.certificate or name.startswith("sk-"):
        return None
    if algorithm.key_type == "ecdsa":
        bits = name.rsplit("nistp", 1)[-1]
        if bits not in ("256", "384", "521"):
            return None
        kind, size, stem = "ecdsa", f" -s {bits}", f"ecdsa{bits}"
    elif algorithm.key_type in _DROPBEAR_KEYS:
        kind, size = _DROPBEAR_KEYS[algorithm.key_type]
        stem = kind
    else:
        return None
    path = f"/etc/dropbear/dropbear_{stem}_host_key"
    return f"[ -e {path} ] || dropbearkey -t {kind}{size} -f {path}"


def _templated(
    peer: Peer, role: Role, changes: Sequence[Change], target: Target, templates: Mapping[str, str]
) -> Written:
    """A step per change from the capability file's template for this role."""
    impl = peer.implementation
    assert impl is not None
    out = Written()
    kind = impl.configure.get(role, "note")
    kinds = impl.extra.get("template_kind", {}).get(role, {})
    for change in changes:
        template = templates.get(change.category) or templates.get("all")
        option = impl.option.get((role, change.category), "")
        if template is None:
            return Written(ok=False, notes=[f"{peer.label} has no setting for {change.category}"])
        tokens = impl.token.get(change.category, {})
        needed = change.names if "{names_tokens}" in template else change.add
        if "_tokens}" in template and any(n not in tokens for n in needed):
            # A setting of tokens cannot carry a name it has no token for: the list it
            # sets would silently drop that name.
            return Written(ok=False, notes=[f"{peer.label} has no setting for some names"])
        values = _values(peer, change, option, target)
        if "{tokens}" in template and not values["tokens"]:
            return Written(ok=False, notes=[f"{peer.label}: its release's setting is not known"])
        out.steps.append(
            _step(role, peer, kinds.get(change.category, kind), _fill(template, values))
        )
    note = impl.extra.get("template_note", {}).get(role, {})
    for key in ("all", *(c.category for c in changes)):
        if key in note and note[key] not in out.notes:
            out.notes.append(note[key])
    untested = impl.extra.get("untested")
    if isinstance(untested, str):
        out.notes.append(f"Untested: {untested}.")
    return out


def _fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each known ``{placeholder}`` replaced; other braces are left alone."""

    def one(found: re.Match[str]) -> str:
        return values[found.group(1)]

    return _PLACEHOLDER.sub(one, template)


def _values(peer: Peer, change: Change, option: str, target: Target) -> dict[str, str]:
    impl = peer.implementation
    assert impl is not None
    names = list(change.names)
    tokens = impl.token.get(change.category, {})
    offerable = peer.can_offer(change.category)
    # paramiko filters base names and then adds each kept one's certificate form itself:
    # a certificate name whose base stays enabled cannot be left out, so it is not listed.
    disabled = sorted(
        n
        for n in (offerable or frozenset()) - set(names)
        if n.removesuffix(CERT_SUFFIX) == n or n.removesuffix(CERT_SUFFIX) not in names
    )
    return {
        "option": option,
        "names": ",".join(names),
        "names_space": " ".join(names),
        "names_py": json.dumps(names),
        "names_go": "[]string{" + ", ".join(json.dumps(n) for n in names) + "}",
        "add": ",".join(change.add),
        "add_tokens": " ".join(dict.fromkeys(tokens.get(n, n) for n in change.add)),
        "names_tokens": " ".join(dict.fromkeys(tokens.get(n, n) for n in names)),
        "disabled_py": json.dumps(disabled),
        "tokens": _setting_above_warn(peer, option, [tokens.get(n, n) for n in change.add]),
        "host": target.host,
        "port": str(target.port or 22),
    }


#: PuTTY's pseudo-token: what follows it in a setting makes PuTTY ask before using it.
PUTTY_WARN = "WARN"


def _setting_above_warn(peer: Peer, option: str, tokens: Sequence[str]) -> str:
    """PuTTY's whole setting value with each token moved just above WARN, the rest in place.

    PuTTY offers every token of the setting, WARN or not, but asks the user (and plink
    -batch gives up) before using one below WARN; the release's default value is the
    starting point, since the wire does not show how a user reordered theirs.
    """
    impl = peer.implementation
    release = impl.release(peer.version) if impl is not None else None
    setting = (release.extra.get("setting", {}) if release is not None else {}).get(option)
    if not isinstance(setting, str):
        return ""
    order = setting.split(",")
    for token in tokens:
        if token in order and PUTTY_WARN in order and order.index(token) > order.index(PUTTY_WARN):
            order.remove(token)
            order.insert(order.index(PUTTY_WARN), token)
        elif token not in order:
            order.insert(order.index(PUTTY_WARN) if PUTTY_WARN in order else len(order), token)
    return ",".join(order)


def _plain(peer: Peer, role: Role, changes: Sequence[Change]) -> Written:
    """Software kexproxy cannot write for: what to add, in words, in its own settings."""
    out = Written()
    for change in changes:
        text = (
            f"Add {', '.join(change.add)} to the {role}'s {_LABEL[change.category]} "
            "algorithms in its own settings."
        )
        out.steps.append(_step(role, peer, "note", text))
    if peer.implementation is not None:
        note = f"kexproxy knows no {role} setting of {peer.label} for this: see its documentation."
    elif peer.software:
        note = (
            f"{peer.label} is not in kexproxy's catalogue of implementations: its own "
            "documentation says where its algorithm lists are set."
        )
    else:
        note = f"kexproxy saw no banner from the {role}, so it cannot name its software's settings."
    out.notes.append(note)
    return out
