"""The scenarios scripts/record_captures.py records: which real server and client, their
configuration, the outcome and the messages each side must print. Data, one entry per capture.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ServerKind = Literal["sshd", "dropbear"]
ClientKind = Literal["ssh", "dbclient", "plink", "paramiko", "asyncssh", "raw"]
Outcome = Literal["success", "negotiation-failed", "banner-refused"]

#: Tools every run needs, besides each scenario's server and client.
COMMON_TOOLS = ("tcpdump", "tshark", "ssh-keygen")

CLIENT_TOOLS: dict[str, tuple[str, ...]] = {
    "ssh": ("ssh",),
    "dbclient": ("dbclient", "dropbearconvert"),
    "plink": ("plink", "puttygen"),
    "paramiko": (),
    "asyncssh": (),
    "raw": (),
}
SERVER_TOOLS: dict[str, tuple[str, ...]] = {
    "sshd": ("sshd",),
    "dropbear": ("dropbear", "dropbearkey"),
}
CLIENT_MODULES: dict[str, tuple[str, ...]] = {"paramiko": ("paramiko",), "asyncssh": ("asyncssh",)}


@dataclass(frozen=True)
class Scenario:
    """One capture: which server with which settings, which client with which options, and what must be observed.

    The expectations are checked on every recording, so a changed peer version that
    behaves differently makes the script fail instead of committing a misleading capture.
    """

    name: str
    description: str
    server: ServerKind
    client: ClientKind
    outcome: Outcome
    #: Negotiation category that fails (kex, host_key, cipher, mac, compression), if any.
    failure: str | None = None
    #: sshd_config lines (sshd) or extra command-line arguments (dropbear).
    server_config: tuple[str, ...] = ()
    host_keys: tuple[str, ...] = ("ed25519", "rsa", "ecdsa")
    #: Command-line options (ssh, dbclient, plink).
    client_opts: tuple[str, ...] = ()
    #: Keyword arguments (paramiko: kex=, ciphers=...; asyncssh: connect options).
    client_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Bytes a raw client sends.
    raw_data: bytes = b""
    #: plink: pass the host key fingerprint so batch mode can log in.
    plink_hostkey: bool = False
    #: Regex the client's output must match; a group named "message" selects the message.
    client_pattern: str | None = None
    #: Regex the server log must match (awaited); a group named "message" selects the message.
    server_pattern: str | None = None
    #: Number of identification strings tshark must decode.
    banners: int = 2
    #: Number of KEXINITs tshark must decode.
    kexinits: int = 2
    #: Whether a plaintext SSH_MSG_DISCONNECT (message 1) must be on the wire.
    disconnect: bool = False
    #: Tries before giving up, for outcomes that are a race (0: the --attempts default).
    attempts: int = 0
    #: The outcome is a timing race that may not come up on this machine now: when every
    #: attempt fails, the committed capture (if any) is kept and the run does not fail.
    racy: bool = False


OPENSSH_UNABLE = (
    r"(?P<message>Unable to negotiate with 127\.0\.0\.1 port \d+: {reason}\. Their offer: \S+)"
)
SSHD_UNABLE = r"(?P<message>Unable to negotiate with 127\.0\.0\.1 port \d+: {reason}\. Their offer: \S+ \[preauth\])"
#: sshd's last line of a session: "Disconnected from user ..." after the client's DISCONNECT (11),
#: "Closing connection to ..." when the client just closes (plink, paramiko).
SSHD_SESSION_END = (
    r"(?P<message>(?:Disconnected from user root|Closing connection to) 127\.0\.0\.1 port \d+)"
)
DROPBEAR_SESSION_END = r"(?P<message>Exit \(root\) from <127\.0\.0\.1:\d+>: .*)"


def _unable(template: str, reason: str) -> str:
    """Fill an "Unable to negotiate" pattern with a reason text, escaped for regex use."""
    return template.replace("{reason}", re.escape(reason))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="openssh-success",
        description="OpenSSH client to sshd with default algorithms; logs in with a key and runs `true`.",
        server="sshd",
        client="ssh",
        outcome="success",
        server_pattern=SSHD_SESSION_END,
    ),
    Scenario(
        name="openssh-kex-fail",
        description="Client offers only diffie-hellman-group14-sha1, sshd only curve25519-sha256: no common key exchange.",
        server="sshd",
        server_config=("KexAlgorithms curve25519-sha256",),
        client="ssh",
        client_opts=("-oKexAlgorithms=diffie-hellman-group14-sha1",),
        outcome="negotiation-failed",
        failure="kex",
        client_pattern=_unable(OPENSSH_UNABLE, "no matching key exchange method found"),
        server_pattern=_unable(SSHD_UNABLE, "no matching key exchange method found"),
    ),
    Scenario(
        name="openssh-hostkey-fail",
        description="Client accepts only ssh-rsa host keys, sshd has only an ed25519 key: no common host key algorithm.",
        server="sshd",
        host_keys=("ed25519",),
        client="ssh",
        client_opts=("-oHostKeyAlgorithms=ssh-rsa",),
        outcome="negotiation-failed",
        failure="host_key",
        client_pattern=_unable(OPENSSH_UNABLE, "no matching host key type found"),
        server_pattern=_unable(SSHD_UNABLE, "no matching host key type found"),
    ),
    Scenario(
        name="openssh-cipher-fail",
        description="Client offers only aes128-cbc, sshd's defaults have no CBC cipher: no common cipher.",
        server="sshd",
        client="ssh",
        client_opts=("-oCiphers=aes128-cbc",),
        outcome="negotiation-failed",
        failure="cipher",
        client_pattern=_unable(OPENSSH_UNABLE, "no matching cipher found"),
        server_pattern=_unable(SSHD_UNABLE, "no matching cipher found"),
    ),
    Scenario(
        name="openssh-mac-fail",
        description="Client offers aes128-ctr with only hmac-md5, sshd only hmac-sha2-256: no common MAC.",
        server="sshd",
        server_config=("MACs hmac-sha2-256",),
        client="ssh",
        client_opts=("-oCiphers=aes128-ctr", "-oMACs=hmac-md5"),
        outcome="negotiation-failed",
        failure="mac",
        client_pattern=_unable(OPENSSH_UNABLE, "no matching MAC found"),
        server_pattern=_unable(SSHD_UNABLE, "no matching MAC found"),
    ),
    Scenario(
        name="openssh-dh-gex",
        description="Client forces diffie-hellman-group-exchange-sha256 (messages 30-33 with a group from sshd's moduli); logs in.",
        server="sshd",
        client="ssh",
        client_opts=("-oKexAlgorithms=diffie-hellman-group-exchange-sha256",),
        outcome="success",
        server_pattern=SSHD_SESSION_END,
    ),
    Scenario(
        name="asyncssh-compression-fail",
        description="asyncssh offers only zlib@openssh.com compression, sshd has `Compression no`: no common compression; asyncssh sends DISCONNECT (3).",
        server="sshd",
        server_config=("Compression no",),
        client="asyncssh",
        client_kwargs={"compression_algs": ["zlib@openssh.com"]},
        outcome="negotiation-failed",
        failure="compression",
        client_pattern=r"KeyExchangeFailed: (?P<message>No matching compression algorithm found.*)",
        server_pattern=_unable(SSHD_UNABLE, "no matching compression method found"),
        disconnect=True,
        attempts=10,  # asyncssh reports ConnectionLost when sshd's FIN wins the race
    ),
    Scenario(
        name="asyncssh-kex-disconnect",
        description="asyncssh offers only diffie-hellman-group14-sha1, sshd only curve25519-sha256; asyncssh sends a plaintext SSH_MSG_DISCONNECT (reason 3, KEY_EXCHANGE_FAILED) before closing, OpenSSH just closes.",
        server="sshd",
        server_config=("KexAlgorithms curve25519-sha256",),
        client="asyncssh",
        client_kwargs={"kex_algs": ["diffie-hellman-group14-sha1"]},
        outcome="negotiation-failed",
        failure="kex",
        client_pattern=r"KeyExchangeFailed: (?P<message>No matching key exchange algorithm found.*)",
        server_pattern=_unable(SSHD_UNABLE, "no matching key exchange method found"),
        disconnect=True,
        attempts=10,  # asyncssh reports ConnectionLost when sshd's FIN wins the race
    ),
    Scenario(
        name="asyncssh-success",
        description="asyncssh client to sshd with default algorithms; logs in and runs `true`.",
        server="sshd",
        client="asyncssh",
        outcome="success",
        server_pattern=SSHD_SESSION_END,
    ),
    Scenario(
        name="paramiko-kex-fail",
        description="paramiko 5 (no SHA-1 key exchange any more) against an sshd limited to diffie-hellman-group14-sha1.",
        server="sshd",
        server_config=("KexAlgorithms diffie-hellman-group14-sha1",),
        client="paramiko",
        outcome="negotiation-failed",
        failure="kex",
        client_pattern=r"IncompatiblePeer: (?P<message>.*)",
        server_pattern=_unable(SSHD_UNABLE, "no matching key exchange method found"),
    ),
    Scenario(
        name="paramiko-success",
        description="paramiko client to sshd with default algorithms; logs in and runs `true`.",
        server="sshd",
        client="paramiko",
        outcome="success",
        server_pattern=SSHD_SESSION_END,
    ),
    Scenario(
        name="plink-kex-fail",
        description="PuTTY plink against an sshd limited to sntrup761x25519-sha512 (the IANA name; PuTTY 0.78 knows only the @openssh.com one); both KEXINITs on the wire.",
        server="sshd",
        server_config=("KexAlgorithms sntrup761x25519-sha512",),
        client="plink",
        outcome="negotiation-failed",
        failure="kex",
        client_pattern=r"FATAL ERROR: (?P<message>Selected key exchange algorithm .*)",
        server_pattern=_unable(SSHD_UNABLE, "no matching key exchange method found"),
        attempts=25,
    ),
    Scenario(
        name="plink-kex-fail-no-client-kexinit",
        description="Same as plink-kex-fail, in the other order (from 3 runs in 4 down to none in 25, depending on the machine's timing): plink reads sshd's KEXINIT before its own is sent, gives up and closes without ever sending a KEXINIT; sshd only logs 'Connection closed ... [preauth]'.",
        server="sshd",
        server_config=("KexAlgorithms sntrup761x25519-sha512",),
        client="plink",
        outcome="negotiation-failed",
        failure="kex",
        client_pattern=r"FATAL ERROR: (?P<message>Selected key exchange algorithm .*)",
        server_pattern=r"(?P<message>Connection closed by 127\.0\.0\.1 port \d+ \[preauth\])",
        kexinits=1,
        attempts=40,
        racy=True,
    ),
    Scenario(
        name="plink-mac-fail",
        description="PuTTY plink against an sshd limited to aes128-ctr with umac-128@openssh.com, a MAC PuTTY lacks; both KEXINITs on the wire.",
        server="sshd",
        server_config=("Ciphers aes128-ctr", "MACs umac-128@openssh.com"),
        client="plink",
        outcome="negotiation-failed",
        failure="mac",
        client_pattern=r"FATAL ERROR: (?P<message>Selected client-to-server MAC .*)",
        server_pattern=_unable(SSHD_UNABLE, "no matching MAC found"),
        attempts=25,
    ),
    Scenario(
        name="plink-success",
        description="PuTTY plink to sshd with default algorithms, host key given by fingerprint (-hostkey); logs in and runs `true`.",
        server="sshd",
        client="plink",
        plink_hostkey=True,
        outcome="success",
        server_pattern=SSHD_SESSION_END,
    ),
    Scenario(
        name="dropbear-client-kex-fail",
        description="Dropbear's dbclient (fixed kex list, no group exchange) against an sshd limited to diffie-hellman-group-exchange-sha256.",
        server="sshd",
        server_config=("KexAlgorithms diffie-hellman-group-exchange-sha256",),
        client="dbclient",
        outcome="negotiation-failed",
        failure="kex",
        client_pattern=r"(?P<message>dbclient: Connection to .* exited: No matching algo kex)",
        server_pattern=_unable(SSHD_UNABLE, "no matching key exchange method found"),
    ),
    Scenario(
        name="dropbear-client-cipher-fail",
        description="dbclient restricted with `-c aes256-ctr` against an sshd limited to aes128-ctr.",
        server="sshd",
        server_config=("Ciphers aes128-ctr",),
        client="dbclient",
        client_opts=("-c", "aes256-ctr"),
        outcome="negotiation-failed",
        failure="cipher",
        client_pattern=r"(?P<message>dbclient: Connection to .* exited: No matching algo enc.*)",
        server_pattern=_unable(SSHD_UNABLE, "no matching cipher found"),
    ),
    Scenario(
        name="dropbear-server-success",
        description="OpenSSH client to a dropbear server with default algorithms; logs in with a key and runs `true`.",
        server="dropbear",
        client="ssh",
        outcome="success",
        server_pattern=DROPBEAR_SESSION_END,
    ),
    Scenario(
        name="dropbear-server-kex-fail",
        description="OpenSSH client forcing diffie-hellman-group-exchange-sha256 against dropbear, which has no group exchange.",
        server="dropbear",
        client="ssh",
        client_opts=("-oKexAlgorithms=diffie-hellman-group-exchange-sha256",),
        outcome="negotiation-failed",
        failure="kex",
        client_pattern=_unable(OPENSSH_UNABLE, "no matching key exchange method found"),
        server_pattern=r"(?P<message>Exit before auth from <127\.0\.0\.1:\d+>: .*)",
    ),
    Scenario(
        name="banner-refused",
        description="A raw TCP client sends an HTTP request instead of an SSH identification string; sshd answers in plaintext and closes.",
        server="sshd",
        client="raw",
        raw_data=b"GET / HTTP/1.0\r\n\r\n",
        outcome="banner-refused",
        client_pattern=r"(?P<message>Invalid SSH identification string\.)",
        server_pattern=r"(?P<message>banner exchange: Connection from 127\.0\.0\.1 port \d+: invalid format)",
        banners=1,
        kexinits=0,
    ),
    Scenario(
        name="banner-version-mismatch",
        description="A raw TCP client announces SSH-1.5; sshd answers 'Protocol major versions differ.' in plaintext and closes.",
        server="sshd",
        client="raw",
        raw_data=b"SSH-1.5-Client_1.0\r\n",
        outcome="banner-refused",
        client_pattern=r"(?P<message>Protocol major versions differ\.)",
        server_pattern=r"(?P<message>Protocol major versions differ: 2 vs\. 1)",
        banners=2,
        kexinits=0,
    ),
)


class RecordError(RuntimeError):
    """A recording did not show what its scenario expects, so it must not be committed."""
