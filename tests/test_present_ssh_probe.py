"""The SSH probe's text for people: every list graded, the host keys, the verdicts, and notes made safe."""

from __future__ import annotations

from kexproxy.core import sshprobe
from kexproxy.core.catalogue import catalogue
from kexproxy.core.sshprobe import PeerReader
from kexproxy.present_ssh_probe import summary
from tests.builders import ident, kexinit, offer


def test_the_summary_grades_every_name_and_says_keys_verdicts_and_notes() -> None:
    reader = PeerReader()
    lists = offer(
        kex=["curve25519-sha256", "diffie-hellman-group1-sha1", "evil\x1b]0;title\x07"],
        host_key=["ssh-ed25519"],
        ciphers=["aes128-cbc"],
        macs=["hmac-sha2-256-etm@openssh.com"],
    )
    reader.receive_data(ident("OpenSSH_7.4") + kexinit(lists))
    key = {"algorithm": "ssh-ed25519", "key_type": "ed25519", "bits": 256, "sha256": "SHA256:x"}
    report = sshprobe.report(
        target="127.0.0.1:22",
        first=reader,
        host_keys=[key],
        handshakes=2,
        notes=["odd \x1b[31m note"],
        cat=catalogue(),
    )
    text = summary(report)
    assert text.startswith("SSH probe of 127.0.0.1:22 (2 handshakes)")
    assert "banner: SSH-2.0-OpenSSH_7.4" in text
    assert "diffie-hellman-group1-sha1" in text and "broken" in text
    assert "cipher (both directions):" in text and "aes128-cbc" in text
    assert "ssh-ed25519" in text and "ed25519 256 bits  SHA256:x" in text
    assert "Terrapin (CVE-2023-48795): EXPOSED" in text
    assert "strict KEX: no; ext-info: no" in text
    assert "\x1b" not in text  # a server's words never reach the terminal raw
    assert "weakest name offered: broken" in text
