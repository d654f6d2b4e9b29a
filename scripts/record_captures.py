#!/usr/bin/env python3
"""(Re)create the demo and test captures in captures/ from real SSH peers on 127.0.0.1.

Each scenario starts a real server (OpenSSH sshd or dropbear) on an ephemeral loopback
port, captures that port with tcpdump while a real client (OpenSSH ssh, dbclient, plink,
paramiko, asyncssh, or a raw socket for banner tests) connects, then checks the capture
with tshark and writes ``captures/<name>.pcap`` and ``captures/<name>.json``: the exact
commands and configuration, the client's exit code, stdout and stderr, the server's log,
the ports, what tshark decodes (banners, KEXINITs, plaintext DISCONNECTs) and the software
versions. ``captures/README.md`` is rewritten from the metadata.

Real peers instead of hand-made bytes, because kexproxy must agree with what OpenSSH and
the others really send and print. Nothing is installed: a missing tool is reported with the
Debian package that provides it and the exit status is 2. Must run as root (tcpdump, sshd).

Usage: python scripts/record_captures.py [--only NAME ...] [--list] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import peers  # noqa: E402

if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

from capture_scenarios import (  # noqa: E402
    CLIENT_MODULES,
    CLIENT_TOOLS,
    COMMON_TOOLS,
    SCENARIOS,
    SERVER_TOOLS,
    RecordError,
    Scenario,
)

# ---------------------------------------------------------------------------------------
# Tools and versions


def missing_tools(scenarios: Sequence[Scenario]) -> list[str]:
    """Return "tool (apt package X)" for every needed tool that is not installed, because this script installs nothing."""
    needed: list[str] = list(COMMON_TOOLS)
    modules: list[str] = []
    for scenario in scenarios:
        needed += SERVER_TOOLS[scenario.server] + CLIENT_TOOLS[scenario.client]
        modules += CLIENT_MODULES.get(scenario.client, ())
        if scenario.server == "dropbear":
            needed.append("ssh-keygen")
    missing = []
    for tool in dict.fromkeys(needed):
        if peers.find_binary(tool) is None:
            missing.append(f"{tool} (apt package {peers.APT_PACKAGE.get(tool, '?')})")
    import importlib.util

    for module in dict.fromkeys(modules):
        if importlib.util.find_spec(module) is None:
            missing.append(f"Python module {module} (pip install {module})")
    return missing


def software_versions() -> dict[str, str]:
    """Return the versions of every peer and tool, so a capture says exactly which software produced it."""
    versions: dict[str, str] = {}
    dpkg = shutil.which("dpkg-query")
    for package in (
        "openssh-server",
        "openssh-client",
        "dropbear-bin",
        "putty-tools",
        "tcpdump",
        "tshark",
    ):
        if dpkg:
            result = peers.run_command([dpkg, "-W", "-f", "${Version}", package], timeout=10)
            if result.returncode == 0 and result.stdout.strip():
                versions[f"deb:{package}"] = result.stdout.strip()
    commands = {
        "ssh": ["ssh", "-V"],
        "dropbear": ["dropbear", "-V"],
        "plink": ["plink", "-V"],
        "tcpdump": ["tcpdump", "--version"],
        "tshark": ["tshark", "--version"],
    }
    for name, argv in commands.items():
        path = peers.find_binary(argv[0])
        if path:
            versions[name] = peers.tool_version([path, *argv[1:]])
    for module in ("paramiko", "asyncssh"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[module] = importlib.metadata.version(module)
    versions["python"] = platform.python_version()
    versions["kernel"] = platform.release()
    return versions


# ---------------------------------------------------------------------------------------
# Recording


@contextlib.contextmanager
def start_server(scenario: Scenario) -> Iterator[peers.Sshd | peers.Dropbear]:
    """Start the scenario's server with its configuration, keeping its temp dir until the with-block ends."""
    if scenario.server == "sshd":
        with peers.Sshd(scenario.server_config, host_keys=scenario.host_keys) as sshd:
            yield sshd
    else:
        with peers.Dropbear(scenario.server_config, host_keys=scenario.host_keys) as dropbear:
            yield dropbear


def run_client(
    scenario: Scenario, server: peers.Sshd | peers.Dropbear
) -> tuple[peers.PeerResult, str]:
    """Run the scenario's client against the server; return its result and a shell-like command line for the metadata."""
    port = server.port
    opts = scenario.client_opts
    kwargs = dict(scenario.client_kwargs)
    if scenario.client == "ssh":
        result = peers.run_ssh(port, *opts)
        return result, shell_join(result.argv)
    if scenario.client == "dbclient":
        result = peers.run_dbclient(port, *opts)
        return result, shell_join(result.argv)
    if scenario.client == "plink":
        hostkey = server.host_key_fingerprint("ed25519") if scenario.plink_hostkey else None
        result = peers.run_plink(port, *opts, hostkey=hostkey)
        return result, shell_join(result.argv)
    if scenario.client == "paramiko":
        result = peers.run_paramiko(port, **kwargs)
        return result, f"tests.peers.run_paramiko({port}, **{kwargs!r})"
    if scenario.client == "asyncssh":
        result = peers.run_asyncssh(port, **kwargs)
        return result, f"tests.peers.run_asyncssh({port}, **{kwargs!r})"
    answer = peers.send_raw(port, scenario.raw_data)
    result = peers.PeerResult(
        argv=("send_raw",),
        returncode=0,
        stdout=answer.decode("utf-8", "replace"),
        stderr="",
    )
    return result, f"tests.peers.send_raw({port}, {scenario.raw_data!r})"


def shell_join(argv: Sequence[str]) -> str:
    """Quote an argv for a shell, so the metadata's command can be pasted into a terminal."""
    import shlex

    return shlex.join(argv)


def match_message(pattern: str | None, text: str) -> str | None:
    """Return the "message" group (or the whole match) of ``pattern`` in ``text``, line by line, CR stripped."""
    if pattern is None:
        return None
    regex = re.compile(pattern)
    for line in text.splitlines():
        found = regex.search(line.rstrip("\r"))
        if found:
            return found.group("message") if "message" in regex.groupindex else found.group(0)
    return None


def client_port_of(pcap: Path, server_port: int) -> int:
    """Return the client's ephemeral port, from the capture's first SYN, which the messages quote."""
    rows = peers.tshark_fields(
        pcap,
        None,
        f"tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == {server_port}",
        ("tcp.srcport",),
    )
    if not rows:
        raise RecordError("no SYN to the server port in the capture")
    return int(rows[0]["tcp.srcport"])


#: Lines a server logs when a connection ends, whatever the reason.
CONNECTION_END = {
    "sshd": r"Unable to negotiate|Connection closed by|Connection reset by|Disconnected from|Closing connection to|banner exchange:|Protocol major versions differ",
    "dropbear": r"Exit before auth|Exit \(",
}


def await_server_log(server: peers.Sshd | peers.Dropbear, pattern: str) -> None:
    """Wait for the scenario's server line, but give up soon after the connection ended another way.

    Some outcomes are races (plink may abort before sending its KEXINIT), and waiting the
    full timeout for a line that will never come would make retries slow.
    """
    end = CONNECTION_END[server.name]
    try:
        server.wait_log(f"(?:{pattern})|(?:{end})", timeout=15)
        server.wait_log(pattern, timeout=1.5)
    except peers.PeerError as exc:
        raise RecordError(str(exc)) from exc


def record(scenario: Scenario, out_dir: Path, versions: Mapping[str, str]) -> dict[str, Any]:
    """Record one scenario into a temp file, check it, then move the pcap and metadata into ``out_dir``.

    Checking before moving keeps a broken recording from replacing a good committed one.
    """
    with tempfile.TemporaryDirectory(prefix="kexproxy-record-") as tmp:
        pcap_tmp = Path(tmp) / f"{scenario.name}.pcap"
        with start_server(scenario) as server:
            with peers.Tcpdump(pcap_tmp, server.port) as capture:
                result, command = run_client(scenario, server)
                server_message = None
                if scenario.server_pattern is not None:
                    await_server_log(server, scenario.server_pattern)
                    server_message = match_message(scenario.server_pattern, server.log_text())
            server_log = server.log_lines()
            server_argv = list(server.argv)
            server_config = server.config_text if isinstance(server, peers.Sshd) else None
            server_port = server.port
        meta = check(scenario, pcap_tmp, server_port, result)
        client_port = client_port_of(pcap_tmp, server_port)
        client_text = result.stdout if scenario.client == "raw" else result.stderr
        client_message = match_message(scenario.client_pattern, client_text)
        data = pcap_tmp.read_bytes()
        metadata: dict[str, Any] = {
            "name": scenario.name,
            "description": scenario.description,
            "outcome": scenario.outcome,
            "failure": scenario.failure,
            "pcap": f"{scenario.name}.pcap",
            "pcap_sha256": hashlib.sha256(data).hexdigest(),
            "pcap_bytes": len(data),
            "packets": capture.packets_captured,
            "recorded_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "regenerate": f"python scripts/record_captures.py --only {scenario.name}",
            "server": {
                "software": scenario.server,
                "address": peers.LOOPBACK,
                "port": server_port,
                "argv": server_argv,
                "config": server_config,
                "host_keys": list(scenario.host_keys),
                "message": server_message,
                "log": server_log,
            },
            "client": {
                "software": scenario.client,
                "address": peers.LOOPBACK,
                "port": client_port,
                "command": command,
                "argv": _displayed_argv(result.argv),
                "options": list(scenario.client_opts) or dict(scenario.client_kwargs) or None,
                "returncode": result.returncode,
                "timed_out": result.timed_out,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "message": client_message,
            },
            "wire": meta,
            "versions": dict(versions),
        }
        if scenario.client == "raw":
            metadata["client"]["sent"] = scenario.raw_data.decode("ascii", "replace")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(pcap_tmp), out_dir / f"{scenario.name}.pcap")
        (out_dir / f"{scenario.name}.json").write_text(
            json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
        )
        return metadata


def check(scenario: Scenario, pcap: Path, port: int, result: peers.PeerResult) -> dict[str, Any]:
    """Check the client result and the capture against the scenario and return what tshark decoded.

    Raises RecordError with the evidence when anything differs.
    """
    problems: list[str] = []
    if result.timed_out:
        problems.append("client timed out")
    if scenario.outcome == "success" and result.returncode != 0:
        problems.append(f"client exit code {result.returncode}, expected 0")
    if scenario.outcome == "negotiation-failed" and result.returncode == 0:
        problems.append("client exit code 0, expected a failure")
    client_text = result.stdout if scenario.client == "raw" else result.stderr
    if (
        scenario.client_pattern is not None
        and match_message(scenario.client_pattern, client_text) is None
    ):
        problems.append(f"client output does not match {scenario.client_pattern!r}")
    banners = peers.tshark_banner_rows(pcap, port)
    kexinits = peers.tshark_kexinit_rows(pcap, port)
    disconnects = peers.tshark_disconnect_rows(pcap, port)
    codes = peers.tshark_message_codes(pcap, port)
    streams = {row["tcp.stream"] for row in banners + kexinits}
    if len(banners) != scenario.banners:
        problems.append(f"{len(banners)} banners decoded, expected {scenario.banners}")
    if len(kexinits) != scenario.kexinits:
        problems.append(f"{len(kexinits)} KEXINITs decoded, expected {scenario.kexinits}")
    if scenario.disconnect and not disconnects:
        problems.append("no plaintext DISCONNECT on the wire")
    if not scenario.disconnect and disconnects:
        problems.append(f"unexpected plaintext DISCONNECT: {disconnects}")
    if len(streams) > 1:
        problems.append(f"more than one TCP connection: streams {sorted(streams)}")
    if problems:
        raise RecordError(
            "; ".join(problems)
            + f"\nclient rc={result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return {
        "banners": [{"direction": _direction(r["ssh.direction"]), "port": int(r["tcp.srcport"]), "banner": r["ssh.protocol"]} for r in banners],
        "kexinits": [{"direction": _direction(r["ssh.direction"]), **r} for r in kexinits],
        "message_codes": [
            {"frame": int(r["frame.number"]), "direction": _direction(r["ssh.direction"]), "code": int(r["ssh.message_code"])}
            for r in codes
        ],
        "disconnects": [
            {
                "direction": _direction(r["ssh.direction"]),
                "port": int(r["tcp.srcport"]),
                "reason": int(r["reason"]) if r["reason"].isdigit() else None,
                "description": r["description"],
            }
            for r in disconnects
        ],
    }  # fmt: skip


def _displayed_argv(argv: Sequence[str]) -> list[str]:
    """Return argv with an inline ``python -c`` program replaced by a pointer to it, to keep the metadata readable."""
    shown = list(argv)
    if len(shown) > 2 and shown[1] == "-c" and "\n" in shown[2]:
        client = "_ASYNCSSH_CLIENT" if "asyncssh" in shown[2] else "_PARAMIKO_CLIENT"
        shown[2] = f"<program tests.peers.{client}>"
    return shown


def _direction(value: str) -> str:
    """Name tshark's ssh.direction value (0 client-to-server, 1 server-to-client)."""
    return {"0": "client-to-server", "1": "server-to-client"}.get(value, value)


# ---------------------------------------------------------------------------------------
# README


README_HEAD = """\
# Captures from real SSH peers

Small pcaps of SSH handshakes between real implementations, all on 127.0.0.1 with ephemeral
ports, made by `scripts/record_captures.py` (which reuses `tests/peers/`). Each
`NAME.pcap` has a `NAME.json` beside it with the exact server configuration and command
lines, the client's exit code, stdout and stderr (the real rejection message), the server's
log, the ports, and what tshark decodes (banners, KEXINITs with HASSH, plaintext message
codes, DISCONNECTs).

Regenerate all of them (as root; nothing is installed, a missing tool is named with its
Debian package and the script exits 2):

    python scripts/record_captures.py            # all scenarios
    python scripts/record_captures.py --only openssh-kex-fail
    python scripts/record_captures.py --list

Every recording is checked before it replaces the committed one: exit code, the client's
and the server's message, the number of banners and KEXINITs tshark decodes, the presence
(or absence) of a plaintext DISCONNECT, one TCP connection only. New host keys are
generated on each run, so the bytes change every time.

Ports are ephemeral and the messages quote them (the client quotes the server's port, sshd
the client's); `server.port` and `client.port` in the metadata are the ones the capture
shows. tshark decodes SSH only on ports 22 and 29418: use `-d tcp.port==PORT,ssh`.
"""


def write_readme(out_dir: Path) -> None:
    """Rewrite captures/README.md from the metadata files present, so it always matches the captures."""
    entries = []
    # tls-*.json are scripts/record_tls_captures.py's, and so is the README's TLS section.
    marker = "<!-- TLS captures: written by scripts/record_tls_captures.py -->"
    readme = out_dir / "README.md"
    old_text = readme.read_text() if readme.exists() else ""
    tls_section = marker + old_text.split(marker, 1)[1] if marker in old_text else ""
    for path in sorted(p for p in out_dir.glob("*.json") if not p.name.startswith("tls-")):
        with contextlib.suppress(ValueError, KeyError):
            entries.append(json.loads(path.read_text()))
    lines = [README_HEAD, "## Captures", ""]
    lines.append("| Capture | Outcome | What happens | Client's message | Server's message |")
    lines.append("|---|---|---|---|---|")
    for meta in entries:
        outcome = meta["outcome"] + (f" ({meta['failure']})" if meta.get("failure") else "")
        client_message = meta["client"].get("message") or f"exit {meta['client']['returncode']}"
        server_message = meta["server"].get("message") or ""
        row = [
            f"`{meta['name']}`",
            outcome,
            meta["description"].replace("|", "\\|"),
            f"`{_short(client_message)}`",
            f"`{_short(server_message)}`" if server_message else "",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Messages are shortened here (`…`); the JSON files have them in full.")
    versions: dict[str, str] = entries[-1]["versions"] if entries else {}
    if versions:
        lines += ["", "## Software", ""]
        lines += [f"- {name}: {value}" for name, value in sorted(versions.items())]
    lines += [
        "",
        "## Observations",
        "",
        "- OpenSSH (client and sshd) sends no SSH_MSG_DISCONNECT on a negotiation failure: both",
        "  sides print the reason and close with FIN. Only asyncssh puts a plaintext DISCONNECT",
        "  (reason 3, KEY_EXCHANGE_FAILED, with its own message) on the wire; paramiko, plink and",
        "  dbclient just close.",
        "- tshark 4.0 decodes a DISCONNECT sent during key exchange only as `ssh.message_code == 1`",
        "  with a raw `ssh.payload`; `tests/peers/` decodes reason and description itself.",
        "- sshd answers a non-SSH first line with the plaintext `Invalid SSH identification string.`",
        "  and an SSH-1.x banner with `Protocol major versions differ.`; it sends no KEXINIT then.",
        "- PuTTY 0.78 (Debian 0.78-2+deb12u2) words a negotiation failure as `Selected TYPE",
        '  "SERVER-LIST" does not correspond to any supported algorithm`, quoting the server\'s',
        "  whole name-list (kex and MAC seen), not `Couldn't agree a TYPE (available: …)` as",
        "  docs/ssh-facts.md says; both strings are in the binary.",
        "- plink sometimes (from 3 runs in 4 down to none in 25, with the timing) reads sshd's KEXINIT, finds",
        "  no match and aborts before its own KEXINIT is sent: the capture then holds only the",
        "  server's KEXINIT and sshd logs `Connection closed by ... [preauth]`, not `Unable to",
        "  negotiate` (plink-kex-fail-no-client-kexinit). The other plink captures are the runs",
        "  where both KEXINITs made it (the script retries until it gets the wanted order).",
        "- dbclient sends its banner and KEXINIT in one segment; a negotiation failure on either",
        "  dropbear side is a FIN, no DISCONNECT; dropbear logs `Exit before auth from <HOST:PORT>:",
        "  No matching algo kex`.",
        '- The OpenSSH client logs "Unable to negotiate ..." at INFO level (`logdie`): with',
        "  `-q` or `LogLevel ERROR` it exits 255 silently.",
        "- Debian's OpenSSH 9.2 offers `sntrup761x25519-sha512` (IANA name) and",
        "  `kex-strict-*-v00@openssh.com`, which upstream 9.2 did not.",
        "",
    ]
    text = "\n".join(lines)
    (out_dir / "README.md").write_text(text + ("\n" + tls_section if tls_section else ""))


def _short(message: str, limit: int = 110) -> str:
    """Shorten a message for the README table; the JSON keeps it whole."""
    message = message.replace("|", "\\|").replace("`", "'")
    return message if len(message) <= limit else message[: limit - 1] + "…"


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
    parser.add_argument(
        "--attempts", type=int, default=3, help="tries per scenario before giving up (default 3)"
    )
    args = parser.parse_args(argv)

    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:30} {scenario.description}")
        return 0
    by_name = {scenario.name: scenario for scenario in SCENARIOS}
    unknown = [name for name in args.only or () if name not in by_name]
    if unknown:
        print(
            f"record_captures: unknown scenario(s): {', '.join(unknown)}; see --list",
            file=sys.stderr,
        )
        return 2
    selected = [by_name[name] for name in args.only] if args.only else list(SCENARIOS)

    if os.geteuid() != 0:
        print(
            "record_captures: must run as root (tcpdump on lo, sshd with privilege separation)",
            file=sys.stderr,
        )
        return 2
    missing = missing_tools(selected)
    if missing:
        print("record_captures: missing tools, nothing recorded:", file=sys.stderr)
        for item in missing:
            print(f"  {item}", file=sys.stderr)
        return 2

    versions = software_versions()
    failed = []
    for scenario in selected:
        for attempt in range(1, (scenario.attempts or args.attempts) + 1):
            try:
                meta = record(scenario, args.out, versions)
            except (RecordError, peers.PeerError) as exc:
                print(f"{scenario.name}: attempt {attempt} failed: {exc}", file=sys.stderr)
                continue
            client = meta["client"]["message"] or f"exit {meta['client']['returncode']}"
            print(f"{scenario.name:30} {meta['pcap_bytes']:6} bytes  {client}")
            break
        else:
            if scenario.racy and (args.out / f"{scenario.name}.json").exists():
                print(
                    f"{scenario.name}: the race did not come up; kept the committed capture",
                    file=sys.stderr,
                )
            else:
                failed.append(scenario.name)
    write_readme(args.out)
    if failed:
        print(f"record_captures: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
