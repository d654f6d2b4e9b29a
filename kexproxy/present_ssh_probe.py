"""Text for people from an SSH probe's report: the banner, each list graded, keys, verdicts.

Apart from the command so that any front end (the command line, a dashboard) can print a
probe the same way; it reads only the report's JSON shape (kexproxy/core/sshprobe.py).
"""

from __future__ import annotations

from typing import Any

from kexproxy.core.lists import DIRECTIONAL_PAIRS, KEX_ALGORITHMS, SERVER_HOST_KEY_ALGORITHMS
from kexproxy.core.textsafe import printable


def _grade_lines(graded: dict[str, str]) -> list[str]:
    return [f"    {printable(name):<48} {grade}" for name, grade in graded.items()]


def summary(report: dict[str, Any]) -> str:
    """The report for people: banner, each list graded, host keys, verdicts, notes."""
    lists = report["grades"]["lists"]
    out = [f"SSH probe of {report['target']} ({report['handshakes']} handshakes)"]
    out.append(f"  banner: {printable(str(report['banner']))}")
    best = report["grades"].get("best_client")
    if best is not None:
        out.append(
            f"  a client offering everything would get: grade {best['grade']} "
            f"({', '.join(p['name'] for p in best['negotiated'][:3])})"
        )
        out += [f"    {printable(str(r))}" for r in best["reasons"]]
    out.append(f"  weakest name offered: {report['grades']['weakest_offered']}")
    out.append("  key exchange:")
    out += _grade_lines(lists[KEX_ALGORITHMS])
    out.append("  host key algorithms:")
    out += _grade_lines(lists[SERVER_HOST_KEY_ALGORITHMS])
    for c2s, s2c, kind in DIRECTIONAL_PAIRS:
        if lists[c2s.rfc] == lists[s2c.rfc]:
            out.append(f"  {kind.label} (both directions):")
            out += _grade_lines(lists[s2c.rfc])
        else:
            for listed in (c2s, s2c):
                out.append(f"  {listed.label}:")
                out += _grade_lines(lists[listed.rfc])
    out.append("  host keys:")
    for key in report["host_keys"]:
        out.append(
            f"    {printable(str(key['algorithm'])):<32} {key['key_type']} {key['bits']} bits  "
            f"{key['sha256']}"
        )
    if not report["host_keys"]:
        out.append("    none learnt")
    markers = report["markers"]
    out.append(
        f"  strict KEX: {'yes' if markers['strict_kex'] else 'no'}; "
        f"ext-info: {'yes' if markers['ext_info'] else 'no'}"
    )
    terrapin = report["terrapin"]
    out.append(
        f"  Terrapin ({terrapin['cve']}): {'EXPOSED' if terrapin['exposed'] else 'not exposed'}: "
        f"{terrapin['reason']}"
    )
    out.append(f"  version hint: {printable(str(report['version_hint']['text']))}")
    for note in report["notes"]:
        out.append(f"  note: {printable(str(note))}")
    return "\n".join(out)
