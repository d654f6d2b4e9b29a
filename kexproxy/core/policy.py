"""Site policies: which algorithms and sizes a handshake may use, checked against a record.

A policy is data (a TOML file such as ``policies/modern.toml``, read by the command layer)
turned into a frozen `Policy` by `Policy.from_dict`, which rejects unknown keys so a typo
cannot silently weaken a policy. `Policy.evaluate` then judges one session record by what it
negotiated: allowed and forbidden algorithms per category (shell-style globs), minimum RSA
and Diffie-Hellman sizes, strict KEX, post-quantum key exchange, a minimum grade, Terrapin.
A handshake that negotiated nothing is not evaluated: it used no algorithm to object to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from kexproxy.core.catalogue import GRADE_ORDER, GRADES, Catalogue, Category, catalogue
from kexproxy.core.diagnosis import diagnose
from kexproxy.core.negotiation import IMPLICIT_MAC
from kexproxy.core.record import JSONDict, SessionRecord

#: Policy sections naming algorithm categories, and the record fields each one covers.
SECTIONS: dict[str, tuple[Category, tuple[str, ...]]] = {
    "kex": ("kex", ("kex",)),
    "host_key": ("host_key", ("host_key",)),
    "cipher": ("cipher", ("cipher_c2s", "cipher_s2c")),
    "mac": ("mac", ("mac_c2s", "mac_s2c")),
    "compression": ("compression", ("compression_c2s", "compression_s2c")),
}
_REQUIRE_KEYS = {
    "min_rsa_bits",
    "min_dh_bits",
    "strict_kex",
    "post_quantum_kex",
    "min_grade",
    "no_terrapin_exposure",
}


class PolicyError(ValueError):
    """A policy file that does not say what it means: an unknown key, a wrong type."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListRule:
    """Globs for one category: a name must match an `allow` pattern (if any) and no `forbid`."""

    allow: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()

    def violation(self, name: str) -> tuple[str, str] | None:
        """(rule, pattern-or-empty) the name breaks, or None."""
        for pattern in self.forbid:
            if fnmatchcase(name, pattern):
                return "forbid", pattern
        if self.allow and not any(fnmatchcase(name, p) for p in self.allow):
            return "allow", ""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A parsed policy; `evaluate` judges a record against it."""

    name: str
    description: str = ""
    rules: Mapping[str, ListRule] = field(default_factory=dict)
    min_rsa_bits: int | None = None
    min_dh_bits: int | None = None
    strict_kex: bool = False
    post_quantum_kex: bool = False
    min_grade: str | None = None
    no_terrapin_exposure: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, default_name: str = "policy") -> Policy:
        """Builds a policy from TOML-shaped data; raises PolicyError on anything unexpected."""
        known = {"name", "description", "require", *SECTIONS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(
                f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        rules: dict[str, ListRule] = {}
        for section in SECTIONS:
            raw = data.get(section)
            if raw is None:
                continue
            if not isinstance(raw, Mapping):
                raise PolicyError(f"[{section}] must be a table with allow/forbid lists")
            extra = sorted(set(raw) - {"allow", "forbid"})
            if extra:
                raise PolicyError(
                    f"[{section}] has unknown key(s) {', '.join(extra)}; use allow, forbid"
                )
            rules[section] = ListRule(
                allow=_allow(raw, section),
                forbid=_globs(raw.get("forbid", ()), f"{section}.forbid"),
            )
        require = data.get("require", {})
        if not isinstance(require, Mapping):
            raise PolicyError("[require] must be a table")
        extra = sorted(set(require) - _REQUIRE_KEYS)
        if extra:
            raise PolicyError(
                f"[require] has unknown key(s) {', '.join(extra)}; known: {', '.join(sorted(_REQUIRE_KEYS))}"
            )
        min_grade = require.get("min_grade")
        if min_grade is not None and min_grade not in GRADES:
            raise PolicyError(f"require.min_grade must be {', '.join(GRADES[:-1])} or {GRADES[-1]}")
        return cls(
            name=_text(data.get("name", default_name), "name"),
            description=_text(data.get("description", ""), "description"),
            rules=rules,
            min_rsa_bits=_bits(require.get("min_rsa_bits"), "min_rsa_bits"),
            min_dh_bits=_bits(require.get("min_dh_bits"), "min_dh_bits"),
            strict_kex=_flag(require.get("strict_kex", False), "strict_kex"),
            post_quantum_kex=_flag(require.get("post_quantum_kex", False), "post_quantum_kex"),
            min_grade=min_grade,
            no_terrapin_exposure=_flag(
                require.get("no_terrapin_exposure", False), "no_terrapin_exposure"
            ),
        )

    def evaluate(self, record: SessionRecord, cat: Catalogue | None = None) -> JSONDict:
        """The record's ``policy`` object: compliant or not, and every violation in words."""
        cat = cat or catalogue()
        negotiated = record.negotiated
        if not negotiated or record.failures:
            return {
                "name": self.name,
                "evaluated": False,
                "compliant": None,
                "reason": f"nothing negotiated to check (outcome {record.outcome})",
                "violations": [],
            }
        diagnosis = record.diagnosis or diagnose(record, cat)
        violations: list[JSONDict] = []
        unchecked: list[str] = []
        self._check_lists(negotiated, violations)
        self._check_sizes(record, cat, violations, unchecked)
        self._check_requirements(diagnosis, violations)
        return {
            "name": self.name,
            "evaluated": True,
            "compliant": not violations,
            "reason": None,
            "violations": violations,
            "unchecked": unchecked,
        }

    def _check_lists(self, negotiated: Mapping[str, Any], out: list[JSONDict]) -> None:
        for section, (_category, fields) in SECTIONS.items():
            rule = self.rules.get(section)
            if rule is None:
                continue
            for name in dict.fromkeys(negotiated.get(f) for f in fields):
                if not isinstance(name, str) or name == IMPLICIT_MAC:
                    continue
                broken = rule.violation(name)
                if broken is None:
                    continue
                kind, pattern = broken
                message = (
                    f"{section} {name} matches forbidden pattern {pattern!r}"
                    if kind == "forbid"
                    else f"{section} {name} is not among the allowed patterns"
                )
                out.append(_violation(f"{section}.{kind}", section, name, message))

    def _check_sizes(
        self,
        record: SessionRecord,
        cat: Catalogue,
        out: list[JSONDict],
        unchecked: list[str],
    ) -> None:
        host_key = record.host_key or {}
        if self.min_rsa_bits is not None:
            key_type = str(host_key.get("key_type") or "")
            bits = host_key.get("bits")
            if key_type.startswith("rsa"):
                if isinstance(bits, int) and bits < self.min_rsa_bits:
                    out.append(
                        _violation(
                            "require.min_rsa_bits",
                            "host_key",
                            bits,
                            f"RSA host key of {bits} bits, under the minimum {self.min_rsa_bits}",
                        )
                    )
                elif not isinstance(bits, int):
                    unchecked.append("min_rsa_bits: the RSA host key's size was not captured")
            elif (
                not host_key and str((record.negotiated or {}).get("host_key", "")).find("rsa") >= 0
            ):
                unchecked.append("min_rsa_bits: the host key was not captured")
        if self.min_dh_bits is None:
            return
        kex = str((record.negotiated or {}).get("kex") or "")
        algorithm = cat.lookup(kex, "kex")
        gex = record.dh_gex or {}
        group: int | None = algorithm.dh_bits if algorithm is not None else None
        if group is None and isinstance(gex.get("p_bits"), int):
            group = gex["p_bits"]
        elif group is None and isinstance(gex.get("transient_rsa_bits"), int):
            group = gex["transient_rsa_bits"]
        if group is None:
            if kex.startswith(("diffie-hellman-group-exchange", "gss-gex", "rsa")):
                unchecked.append("min_dh_bits: the server's group was not captured")
            return
        if group < self.min_dh_bits:
            out.append(
                _violation(
                    "require.min_dh_bits",
                    "kex",
                    group,
                    f"{kex} used a {group}-bit group, under the minimum {self.min_dh_bits}",
                )
            )

    def _check_requirements(self, diagnosis: Mapping[str, Any], out: list[JSONDict]) -> None:
        terrapin = diagnosis.get("terrapin") or {}
        pq = diagnosis.get("post_quantum") or {}
        if self.strict_kex and not terrapin.get("strict_kex"):
            out.append(
                _violation(
                    "require.strict_kex",
                    "kex",
                    None,
                    "strict KEX is not in effect (both kex-strict markers are needed)",
                )
            )
        if self.no_terrapin_exposure and terrapin.get("exposed"):
            out.append(
                _violation(
                    "require.no_terrapin_exposure", "cipher", None, str(terrapin.get("reason"))
                )
            )
        if self.post_quantum_kex and not pq.get("post_quantum"):
            out.append(
                _violation(
                    "require.post_quantum_kex",
                    "kex",
                    pq.get("kex"),
                    f"the key exchange is not post-quantum: {pq.get('reason')}",
                )
            )
        grade = diagnosis.get("grade")
        if (
            self.min_grade is not None
            and grade is not None
            and GRADE_ORDER[grade] > GRADE_ORDER[self.min_grade]
        ):
            reasons = diagnosis.get("reasons") or []
            why = f": {reasons[0]}" if reasons else ""
            out.append(
                _violation(
                    "require.min_grade",
                    None,
                    grade,
                    f"the negotiated set is {grade}, the policy needs {self.min_grade}{why}",
                )
            )


def _violation(rule: str, field_name: str | None, value: Any, message: str) -> JSONDict:
    return {"rule": rule, "field": field_name, "value": value, "message": message}


def _allow(raw: Mapping[str, Any], section: str) -> tuple[str, ...]:
    """`allow`: absent allows everything; an empty list would allow nothing and is surely
    a mistake, so it is refused rather than read either way."""
    if "allow" in raw and isinstance(raw["allow"], list) and not raw["allow"]:
        raise PolicyError(
            f"{section}.allow is empty: it would allow nothing; leave it out to allow all "
            "names, or list the ones to allow"
        )
    return _globs(raw.get("allow", ()), f"{section}.allow")


def _globs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise PolicyError(f"{where} must be a list of glob patterns")
    if not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must hold non-empty strings")
    return tuple(value)


def _bits(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PolicyError(f"require.{where} must be a positive integer")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"require.{where} must be true or false")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{where} must be a string")
    return value
