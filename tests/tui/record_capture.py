"""Records tests/tui/data/openssh-dashboard.pcap: real OpenSSH handshakes for the dashboard tests.

One sshd (curve25519-sha256 and the default ciphers only) and three real ssh clients: one
that negotiates, one whose key exchange has no match, one whose cipher has no match. The
snapshot tests need fixed records from a real capture; this script says how it was made.

    python -m tests.tui.record_capture
"""

from __future__ import annotations

from pathlib import Path

from tests.peers import Sshd, Tcpdump, run_ssh

OUT = Path(__file__).parent / "data" / "openssh-dashboard.pcap"


def main() -> None:
    with Sshd(["KexAlgorithms curve25519-sha256"]) as sshd, Tcpdump(OUT, sshd.port):
        ok = run_ssh(sshd.port)
        kex = run_ssh(sshd.port, "-oKexAlgorithms=diffie-hellman-group14-sha1")
        cipher = run_ssh(sshd.port, "-oCiphers=aes128-cbc")
    for name, result in (("ok", ok), ("kex", kex), ("cipher", cipher)):
        print(name, result.returncode, (result.negotiation_message or "").strip())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
