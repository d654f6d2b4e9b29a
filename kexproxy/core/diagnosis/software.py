"""What each side of a handshake is and offers: the banner's words and its KEXINIT's names.

`Software` is the banner's software and release as written, for the rejection lines a
side's own software prints (native.py); what a release can offer and how it is configured
is the implementation catalogue's (implementations.py). `offered` reads the names a side
offered defensively, from a record that may come from a file.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict

ROLES: tuple[Role, ...] = ("client", "server")


def offered(kexinit: JSONDict | None, rfc_list: str) -> list[str]:
    """The names a side's KEXINIT holds in `rfc_list`, skipping anything that is not text."""
    names = (kexinit or {}).get(rfc_list, [])
    return [n for n in names if isinstance(n, str)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Software:
    """What a banner claims it runs, as written: never a verdict, a peer may fake it."""

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
