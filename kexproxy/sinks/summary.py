"""One plain line per finished session, and each side's rejection message under it.

What ``kexproxy proxy`` prints on stdout without ``--json``: a log a person can follow
live, with the verdict and the policy's violations, every stranger's string escaped.
"""

from __future__ import annotations

from typing import TextIO

from kexproxy.core.record import SessionRecord
from kexproxy.core.textsafe import printable


class SummarySink:
    """One plain line per finished session, and each side's rejection message under it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def update(self, record: SessionRecord, *, final: bool) -> None:
        if not final:
            return
        from kexproxy.present import endpoint, native_words, software, summary, verdict_line

        detail = summary(record)
        verdict = verdict_line(record)
        detail = f"{detail}  {verdict}" if detail and verdict else detail or verdict
        line = (
            f"{record.ended or record.started or '-'}  {record.id}  "
            f"{endpoint(record.client)} -> {endpoint(record.server)}  "
            f"{software(record.client_banner)} / {software(record.server_banner)}  "
            f"{record.outcome}" + (f"  {detail}" if detail else "")
        )
        lines = [printable(line)]
        for role in ("client", "server"):
            rejection = record.rejections.get(role)
            if isinstance(rejection, dict):
                lines.append(f"    {role}: {printable(str(rejection.get('message')))}")
                words = native_words(record, role)
                if words is not None:
                    lines.append(f"    {role} ({printable(words[0])}): {printable(words[1])}")
        judged = record.policy or {}
        if judged.get("compliant") is False:
            lines += [
                f"    policy {printable(str(judged.get('name')))}: "
                f"{printable(str(v.get('message')))}"
                for v in judged.get("violations", [])
                if isinstance(v, dict)
            ]
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()
