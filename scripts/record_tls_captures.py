#!/usr/bin/env python3
"""(Re)create the TLS captures in captures/ (``tls-NAME.pcap`` + ``tls-NAME.json``) from real peers on 127.0.0.1.

Each scenario (scripts/tls_capture_scenarios.py) makes a throwaway PKI, starts a real server
(``openssl s_server`` or ``gnutls-serv``) on an ephemeral loopback port, captures that port
with tcpdump while a real client (``s_client``, ``gnutls-cli``, Python ``ssl``, curl)
connects, checks from the peers' own output and from tshark's decode that the scenario
really behaved as named, and only then writes the capture and its metadata: the commands,
the tools' versions, the client's exit code, stdout and stderr, the server's output, the
ports, ``expected`` (outcome, who refused which list, the alert, each side's own words)
and tshark's decode (JA3/JA3S, lists, alerts, records, closes). ``captures/README.md``
gets its TLS section rewritten.

Nothing is installed: a missing tool is named with its Debian package and the exit status
is 2. Must run as root (tcpdump).

Usage: python scripts/record_tls_captures.py [--only NAME ...] [--list] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for folder in (REPO, REPO / "scripts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from tls_capture_scenarios import (  # noqa: E402
    CLIENT_TOOLS,
    COMMON_TOOLS,
    SCENARIOS,
    SERVER_TOOLS,
    TlsScenario,
)

from tests import peers  # noqa: E402
from tests.peers import tls_peers  # noqa: E402

#: IANA TLS alert descriptions (RFC 8446 6, RFC 6066) for the codes the scenarios meet.
ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
ALERT_CODES = {name: code for code, name in ALERT_NAMES.items()}

#: The TLS section of captures/README.md starts at this line; scripts/record_captures.py keeps it.
README_MARKER = "<!-- TLS captures: written by scripts/record_tls_captures.py -->"


class RecordError(RuntimeError):
    """A recording did not behave as its scenario says; the message holds the evidence."""


# ---------------------------------------------------------------------------------------
# Tools and versions


def missing_tools(scenarios: Sequence[TlsScenario]) -> list[str]:
    """Return "tool (apt package X)" for every needed tool that is not installed."""
    needed = list(COMMON_TOOLS)
    for scenario in scenarios:
        needed += SERVER_TOOLS[scenario.server] + CLIENT_TOOLS[scenario.client]
    return [
        f"{tool} (apt package {peers.APT_PACKAGE.get(tool, '?')})"
        for tool in dict.fromkeys(needed)
        if peers.find_binary(tool) is None
    ]


def software_versions() -> dict[str, str]:
    """The versions of every peer and tool, so a capture says exactly which software made it."""
    versions: dict[str, str] = {}
    dpkg = shutil.which("dpkg-query")
    for package in ("openssl", "gnutls-bin", "curl", "tcpdump", "tshark"):
        if dpkg:
            result = peers.run_command([dpkg, "-W", "-f", "${Version}", package], timeout=10)
            if result.returncode == 0 and result.stdout.strip():
                versions[f"deb:{package}"] = result.stdout.strip()
    commands = {
        "openssl": ["openssl", "version"],
        "gnutls-cli": ["gnutls-cli", "--version"],
        "curl": ["curl", "--version"],
        "tcpdump": ["tcpdump", "--version"],
        "tshark": ["tshark", "--version"],
    }
    for name, argv in commands.items():
        path = peers.find_binary(argv[0])
        if path:
            versions[name] = peers.tool_version([path, *argv[1:]])
    versions["python"] = platform.python_version()
    versions["python-ssl"] = ssl.OPENSSL_VERSION
    versions["kernel"] = platform.release()
    return versions


# ---------------------------------------------------------------------------------------
# Running one scenario


def fill(options: Sequence[str], pki: tls_peers.Pki, leaf: tls_peers.Leaf) -> list[str]:
    """Replace {ca}, {stranger_ca}, {cert}, {key} in ``options`` with the PKI's files."""
    values = {
        "ca": str(pki.ca_cert),
        "stranger_ca": str(pki.stranger_ca_cert),
        "cert": str(leaf.cert),
        "key": str(leaf.key),
    }
    return [option.format(**values) for option in options]


def start_server(scenario: TlsScenario, pki: tls_peers.Pki) -> tls_peers.TlsServer:
    """The scenario's server, not yet started (a context manager)."""
    leaf = pki.leaf(scenario.leaf)
    options = fill(scenario.server_options, pki, leaf)
    if scenario.server == "s_server":
        return tls_peers.OpensslServer(leaf, *options, www=scenario.www)
    return tls_peers.GnutlsServer(leaf, *options)


def run_client(scenario: TlsScenario, port: int, pki: tls_peers.Pki) -> peers.PeerResult:
    """Run the scenario's client once against ``port``."""
    options = fill(scenario.client_options, pki, pki.leaf(scenario.leaf))
    if scenario.client == "s_client":
        return tls_peers.run_s_client(port, *options)
    if scenario.client == "gnutls-cli":
        return tls_peers.run_gnutls_cli(port, *options)
    if scenario.client == "curl":
        return tls_peers.run_curl(port, *options)
    kwargs = {
        key: fill([value], pki, pki.leaf(scenario.leaf))[0]
        for key, value in scenario.python_options
    }
    return tls_peers.run_python_ssl(port, **kwargs)  # type: ignore[arg-type]


def client_says(client: str, result: peers.PeerResult) -> str | None:
    """The client's own reason text for a failure, in its words, or None."""
    text = result.stdout + "\n" + result.stderr
    if client == "s_client":
        return tls_peers.openssl_reason(result.stderr)
    if client == "gnutls-cli":
        return tls_peers.gnutls_error(text)
    if client == "curl":
        found = re.search(
            r"curl: \(\d+\) .*?error:[0-9A-Fa-f]{8}:SSL routines:[^:]*:(.*)$", text, re.M
        )
        return found.group(1).strip() if found else None
    found = re.search(
        r"^ssl\.\w+: \[SSL: [A-Z0-9_]+\] ([^:(]+?)(?::[^(]*)? \(_ssl\.c:\d+\)$", text, re.M
    )
    return found.group(1).strip() if found else None


def server_says(server: str, output: str) -> str | None:
    """The server's own reason text (s_server's error line, gnutls-serv's "Error in handshake"), or None."""
    if server == "s_server":
        return tls_peers.openssl_reason(output)
    return tls_peers.gnutls_error(output)


def server_alert_number(output: str) -> int | None:
    """The alert s_server says it received ("SSL alert number 48"), or None."""
    found = re.search(r"SSL alert number (\d+)", output)
    return int(found.group(1)) if found else None


def shown(argv: Sequence[str], pki: tls_peers.Pki) -> list[str]:
    """``argv`` with the PKI's temp dir written as ``$PKI`` and the Python client program named, for the metadata."""
    out = [arg.replace(str(pki.directory), "$PKI") for arg in argv]
    if len(out) > 2 and out[1] == "-c":
        out[0], out[2] = "python3", "<program tests.peers.tls_peers._PYTHON_SSL_CLIENT>"
    return out


def record(scenario: TlsScenario, out_dir: Path, versions: dict[str, str]) -> dict[str, Any]:
    """Record one scenario into a temp dir, check it, then move pcap and metadata into ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="kexproxy-tls-record-") as tmp:
        pki = tls_peers.make_pki(Path(tmp) / "pki")
        pcap_tmp = Path(tmp) / f"tls-{scenario.name}.pcap"
        with start_server(scenario, pki) as server:
            with peers.Tcpdump(pcap_tmp, server.port) as capture:
                result = run_client(scenario, server.port, pki)
                if scenario.server == "s_server":
                    server.wait_exit(timeout=5.0)
                elif scenario.server_says is not None:
                    server.wait_output(re.escape(scenario.server_says), timeout=5.0)
            port = server.port
            server_argv = shown(server.argv, pki)
        client_argv = shown(result.argv, pki)
        decode = tls_peers.tshark_tls_decode(pcap_tmp, port)
        seen = check(scenario, result, server.stderr + server.stdout, decode)
        data = pcap_tmp.read_bytes()
        name = f"tls-{scenario.name}"
        metadata: dict[str, Any] = {
            "name": name,
            "protocol": "tls",
            "description": scenario.description,
            "pcap": f"{name}.pcap",
            "pcap_sha256": hashlib.sha256(data).hexdigest(),
            "pcap_bytes": len(data),
            "packets": capture.packets_captured,
            "recorded_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "regenerate": f"python scripts/record_tls_captures.py --only {scenario.name}",
            "server": {
                "software": scenario.server,
                "address": peers.LOOPBACK,
                "port": port,
                "argv": server_argv,
                "command": shlex.join(server_argv),
                "certificate": scenario.leaf,
                "stdout": server.stdout,
                "stderr": server.stderr,
            },
            "client": {
                "software": scenario.client,
                "address": peers.LOOPBACK,
                "port": client_port(pcap_tmp, port),
                "argv": client_argv,
                "command": shlex.join(client_argv),
                "returncode": result.returncode,
                "timed_out": result.timed_out,
                "stdout": result.stdout,
                "stderr": result.stderr,
            },
            "expected": seen,
            "tshark": decode,
            "versions": versions,
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(pcap_tmp), out_dir / f"{name}.pcap")
        (out_dir / f"{name}.json").write_text(
            json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
        )
        return metadata


def client_port(pcap: Path, server_port: int) -> int:
    """The client's ephemeral port, from the capture's first SYN."""
    rows = peers.tshark_fields(
        pcap,
        None,
        f"tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == {server_port}",
        ("tcp.srcport",),
    )
    if not rows:
        raise RecordError("no SYN to the server port in the capture")
    return int(rows[0]["tcp.srcport"])


def check(
    scenario: TlsScenario, result: peers.PeerResult, server_output: str, decode: dict[str, Any]
) -> dict[str, Any]:
    """Check that the peers and the wire did what ``scenario`` says; return ``expected`` as seen.

    Raises RecordError with the evidence when anything differs.
    """
    problems: list[str] = []
    said_client = client_says(scenario.client, result)
    said_server = server_says(scenario.server, server_output)
    if result.timed_out:
        problems.append("client timed out")
    if (result.returncode == 0) != (scenario.outcome == "negotiated"):
        problems.append(f"client exit code {result.returncode} for outcome {scenario.outcome}")
    if scenario.client_shows is not None and scenario.client_shows not in result.stdout:
        problems.append(f"client stdout lacks {scenario.client_shows!r}")
    if said_client != scenario.client_says:
        problems.append(f"client says {said_client!r}, expected {scenario.client_says!r}")
    if said_server != scenario.server_says:
        problems.append(f"server says {said_server!r}, expected {scenario.server_says!r}")
    if not decode["client_hellos"]:
        problems.append("tshark decodes no ClientHello")
    if len(decode["server_hellos"]) != scenario.server_hellos:
        problems.append(
            f"tshark decodes {len(decode['server_hellos'])} ServerHellos, expected {scenario.server_hellos}"
        )
    fatal = [a for a in decode["alerts"] if a["level"] == "fatal"]
    if scenario.alert is None and fatal:
        problems.append(f"unexpected fatal alert(s) {fatal}")
    if scenario.alert is not None:
        code = ALERT_CODES[scenario.alert]
        clear = [a for a in fatal if a["from"] == scenario.refused_by]
        if scenario.alert_encrypted:
            if clear:
                problems.append(f"alert expected encrypted, tshark decodes {clear}")
            if not any(
                r["from"] == scenario.refused_by and r["opaque_types"]
                for r in decode["records"][2:]
            ):
                problems.append("no encrypted record from the refusing side")
        elif [a["description"] for a in clear] != [code]:
            problems.append(
                f"fatal alerts from {scenario.refused_by}: {clear}, expected one {scenario.alert} ({code})"
            )
        received = server_alert_number(server_output)
        if scenario.refused_by == "client" and scenario.server == "s_server" and received != code:
            problems.append(f"s_server says it received alert {received}, expected {code}")
    if problems:
        raise RecordError(
            "; ".join(problems)
            + f"\nclient rc={result.returncode}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr}"
            + f"\nserver: {server_output[-2000:]}"
        )
    first_close = decode["closes"][0]["from"] if decode["closes"] else None
    return {
        "outcome": scenario.outcome,
        "refused_by": scenario.refused_by,
        "list": scenario.list,
        "alert": scenario.alert,
        "alert_encrypted": scenario.alert_encrypted if scenario.alert else None,
        "server_says": said_server,
        "client_says": said_client,
        "first_close": first_close,
        "hello_retry_request": scenario.server_hellos == 2,
    }


# ---------------------------------------------------------------------------------------
# README


README_HEAD = f"""{README_MARKER}
## TLS captures

Made by `scripts/record_tls_captures.py` (scenarios in `scripts/tls_capture_scenarios.py`,
peers in `tests/peers/tls_peers.py`), as root:

    python scripts/record_tls_captures.py            # all scenarios
    python scripts/record_tls_captures.py --only tls12-no-shared-cipher
    python scripts/record_tls_captures.py --list

A fresh throwaway PKI (RSA 2048, ECDSA P-256 and Ed25519 leaves, a CA and a stranger CA) is
made for every recording; only the pcaps and their metadata are kept. Every recording is
checked before it replaces the committed one: the client's exit code and output, each side's
own reason text (`server_says`: s_server's error line or gnutls-serv's "Error in handshake";
`client_says`: the client's), the alert and its sender in tshark's decode (or, encrypted,
an opaque record from that side and s_server's "SSL alert number N"), the number of
ServerHellos. `tls-NAME.json` holds `expected` (what was seen) and `tshark` (tshark's decode,
JA3/JA3S included), which `tests/integration/test_tls_captures.py` re-derives from the pcap.
tshark decodes TLS only on known ports: use `-d tcp.port==PORT,tls`.

| Capture | Outcome | Refused by (list) | Alert | Server says | Client says |
|---|---|---|---|---|---|
"""


def write_readme_section(out_dir: Path) -> None:
    """Rewrite the TLS section of README.md (from README_MARKER to the end) from the tls-*.json present."""
    readme = out_dir / "README.md"
    text = readme.read_text() if readme.exists() else ""
    head = text.split(README_MARKER, 1)[0].rstrip("\n")
    rows = []
    for path in sorted(out_dir.glob("tls-*.json")):
        with contextlib.suppress(ValueError, KeyError):
            meta = json.loads(path.read_text())
            want = meta["expected"]
            refused = f"{want['refused_by']} ({want['list']})" if want["refused_by"] else ""
            alert = (want["alert"] or "") + (" (encrypted)" if want.get("alert_encrypted") else "")
            cells = [
                f"`{meta['name']}`",
                want["outcome"],
                refused,
                alert,
                f"`{want['server_says'] or ''}`",
                f"`{want['client_says'] or ''}`",
            ]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    readme.write_text((head + "\n\n" if head else "") + README_HEAD + "\n".join(rows) + "\n")


# ---------------------------------------------------------------------------------------
# Main


def main(argv: Sequence[str] | None = None) -> int:
    """Record the selected scenarios; exit 0 when all were recorded, 1 when one failed, 2 when tools are missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="record only these scenarios")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--out", type=Path, default=REPO / "captures", help="output directory (default: captures/)"
    )
    parser.add_argument("--attempts", type=int, default=2, help="tries per scenario (default 2)")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:36} {scenario.description}")
        return 0
    by_name = {scenario.name: scenario for scenario in SCENARIOS}
    unknown = [name for name in args.only or () if name not in by_name]
    if unknown:
        print(
            f"record_tls_captures: unknown scenario(s): {', '.join(unknown)}; see --list",
            file=sys.stderr,
        )
        return 2
    selected = [by_name[name] for name in args.only] if args.only else list(SCENARIOS)
    if os.geteuid() != 0:
        print("record_tls_captures: must run as root (tcpdump on lo)", file=sys.stderr)
        return 2
    missing = missing_tools(selected)
    if missing:
        print("record_tls_captures: missing tools, nothing recorded:", file=sys.stderr)
        for item in missing:
            print(f"  {item}", file=sys.stderr)
        return 2
    versions = software_versions()
    failed = []
    for scenario in selected:
        for attempt in range(1, args.attempts + 1):
            try:
                meta = record(scenario, args.out, versions)
            except (RecordError, peers.PeerError) as exc:
                print(f"{scenario.name}: attempt {attempt} failed: {exc}", file=sys.stderr)
                continue
            want = meta["expected"]
            print(
                f"{scenario.name:36} {meta['pcap_bytes']:6} bytes  {want['outcome']:10} {want['alert'] or ''} {want['server_says'] or ''}"
            )
            break
        else:
            failed.append(scenario.name)
    write_readme_section(args.out)
    if failed:
        print(f"record_tls_captures: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
