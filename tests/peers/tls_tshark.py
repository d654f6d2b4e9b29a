"""What tshark decodes of a TLS capture, as plain JSON-able data (re-exported by tests/peers/tls_peers.py)."""

from __future__ import annotations

from pathlib import Path

from tests.peers.base import PeerError, run_command, which_or_skip

#: tshark fields per packet, in order (``-E occurrence=a``: every occurrence, joined by ";").
TLS_FIELDS = (
    "frame.number",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.fin",
    "tcp.flags.reset",
    "tls.record.content_type",
    "tls.record.opaque_type",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.extensions_supported_group",
    "tls.handshake.sig_hash_alg",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.extensions_key_share_group",
    "tls.handshake.extensions_key_share_selected_group",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.ja3",
    "tls.handshake.ja3_full",
    "tls.handshake.ja3s",
    "tls.handshake.ja3s_full",
    "tls.alert_message.level",
    "tls.alert_message.desc",
)

#: TLS alert levels (RFC 8446 6) by code, for the decode's readability.
ALERT_LEVELS = {1: "warning", 2: "fatal"}


def _numbers(value: str) -> list[int]:
    """tshark's ";"-joined numbers (decimal or 0x hex) as ints."""
    return [int(item, 0) for item in value.split(";") if item]


def _flag(value: str) -> bool:
    """tshark's flag field ("1"/"True" when set)."""
    return value.split(";", maxsplit=1)[0] in ("1", "True")


def tshark_tls_decode(
    pcap: str | Path, server_port: int, *, timeout: float = 60.0
) -> dict[str, object]:
    """What tshark decodes of the TLS connection to ``server_port`` in ``pcap``, as plain JSON-able data.

    Keys: ``client_hellos`` (ja3, ja3_full, legacy_version, cipher_suites, extensions,
    supported_groups, signature_algorithms, versions, key_share_groups, server_name, alpn;
    codes as ints, GREASE kept, as on the wire), ``server_hellos`` (ja3s, ja3s_full,
    legacy_version, cipher_suite, extensions, versions, key_share_groups; a HelloRetryRequest
    is one too), ``alerts`` in clear (from, level, description code), ``records`` (per packet
    with TLS: from, the clear record content types and the TLS 1.3 outer ``opaque_types``, so
    an encrypted alert shows as 21 after 20 in TLS 1.2, or hides in an opaque 23 in TLS 1.3) and ``closes`` (each FIN or RST, from which side).
    ``-d tcp.port==PORT,tls`` because tshark decodes TLS by port.
    """
    tshark = which_or_skip("tshark")
    argv = [tshark, "-n", "-r", str(pcap), "-d", f"tcp.port=={server_port},tls", "-T", "fields"]
    argv += ["-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;"]
    for name in TLS_FIELDS:
        argv += ["-e", name]
    result = run_command(argv, timeout=timeout)
    if result.returncode != 0:
        raise PeerError(f"tshark failed ({result.returncode}): {result.stderr}")
    decode: dict[str, list[dict[str, object]]] = {
        "client_hellos": [],
        "server_hellos": [],
        "alerts": [],
        "records": [],
        "closes": [],
    }
    for line in result.stdout.splitlines():
        values = line.split("|")
        if len(values) != len(TLS_FIELDS):
            raise PeerError(
                f"tshark row has {len(values)} fields, expected {len(TLS_FIELDS)}: {line!r}"
            )
        row = dict(zip(TLS_FIELDS, values, strict=True))
        side = "client" if row["tcp.dstport"] == str(server_port) else "server"
        frame = int(row["frame.number"])
        if _flag(row["tcp.flags.fin"]) or _flag(row["tcp.flags.reset"]):
            how = "rst" if _flag(row["tcp.flags.reset"]) else "fin"
            decode["closes"].append({"frame": frame, "from": side, "how": how})
        content_types = _numbers(row["tls.record.content_type"])
        opaque_types = _numbers(row["tls.record.opaque_type"])
        if content_types or opaque_types:
            decode["records"].append(
                {
                    "frame": frame,
                    "from": side,
                    "content_types": content_types,
                    "opaque_types": opaque_types,
                }
            )
        types = _numbers(row["tls.handshake.type"])
        if 1 in types:
            decode["client_hellos"].append(
                {
                    "frame": frame,
                    "ja3": row["tls.handshake.ja3"],
                    "ja3_full": row["tls.handshake.ja3_full"],
                    "legacy_version": _numbers(row["tls.handshake.version"])[0],
                    "cipher_suites": _numbers(row["tls.handshake.ciphersuite"]),
                    "extensions": _numbers(row["tls.handshake.extension.type"]),
                    "supported_groups": _numbers(row["tls.handshake.extensions_supported_group"]),
                    "signature_algorithms": _numbers(row["tls.handshake.sig_hash_alg"]),
                    "versions": _numbers(row["tls.handshake.extensions.supported_version"]),
                    "key_share_groups": _numbers(row["tls.handshake.extensions_key_share_group"]),
                    "server_name": row["tls.handshake.extensions_server_name"] or None,
                    "alpn": [a for a in row["tls.handshake.extensions_alpn_str"].split(";") if a],
                }
            )
        if 2 in types:
            decode["server_hellos"].append(
                {
                    "frame": frame,
                    "ja3s": row["tls.handshake.ja3s"],
                    "ja3s_full": row["tls.handshake.ja3s_full"],
                    "legacy_version": _numbers(row["tls.handshake.version"])[0],
                    "cipher_suite": _numbers(row["tls.handshake.ciphersuite"])[0],
                    "extensions": _numbers(row["tls.handshake.extension.type"]),
                    "versions": _numbers(row["tls.handshake.extensions.supported_version"]),
                    "key_share_groups": _numbers(row["tls.handshake.extensions_key_share_group"]),
                    "selected_group": _numbers(
                        row["tls.handshake.extensions_key_share_selected_group"]
                    ),
                }
            )
        levels = _numbers(row["tls.alert_message.level"])
        for level, description in zip(
            levels, _numbers(row["tls.alert_message.desc"]), strict=False
        ):
            decode["alerts"].append(
                {
                    "frame": frame,
                    "from": side,
                    "level": ALERT_LEVELS.get(level, str(level)),
                    "description": description,
                }
            )
    return dict(decode)
