"""What each side of a handshake is and offers: the banner's claims and its KEXINIT's names.

Fixes must be ones a side can apply, so the diagnosis needs to know which implementation
and release a banner claims (only to know what it can implement, never as a verdict) and
the names a side offered, read defensively from a record that may come from a file.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexproxy.core.catalogue import Algorithm, Category, version_key
from kexproxy.core.negotiation import Role
from kexproxy.core.record import JSONDict

ROLES: tuple[Role, ...] = ("client", "server")


def offered(kexinit: JSONDict | None, rfc_list: str) -> list[str]:
    """The names a side's KEXINIT holds in `rfc_list`, skipping anything that is not text."""
    names = (kexinit or {}).get(rfc_list, [])
    return [n for n in names if isinstance(n, str)]


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

    def known_to_offer(self, algorithm: Algorithm | None, side: Role) -> bool:
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

    def predates(self, release: str) -> bool:
        """True when the banner names a release older than `release` (an unknown one is not)."""
        return self.version is not None and version_key(self.version) < version_key(release)
