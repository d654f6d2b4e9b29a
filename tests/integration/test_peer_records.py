"""Records from captures of real peers, checked against what those peers said and tshark saw.

Two sets, one comparison:

- every capture committed in `captures/`, against the metadata its recording saved (the
  client's own output, the server's log, tshark's fields for the same file);
- fresh captures recorded now, with tcpdump, by the same scenarios as
  `scripts/record_captures.py` (OpenSSH on both sides for each failure kind, dropbear and
  plink as clients, dropbear as server), against what the peers print and log today and
  what tshark decodes from the new file.

The client's message is compared word for word when the client is OpenSSH (the record's
`rejections.client.message` is what an OpenSSH client prints); sshd's log line likewise,
without " [preauth]". Other clients word their failures their own way; for them the
failing list must name the kind the client complained about, and each side's `native` must
be what that peer printed or logged (dbclient's after "exited: ").
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kexproxy.core.catalogue import LIST_CATEGORY
from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import capture_records
from tests import peers
from tests.builders import assert_valid_record

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
CAPTURE_NAMES = sorted(
    p.stem for p in CAPTURES.glob("*.json") if not p.name.startswith("tls-")
)  # SSH; TLS: test_tls_captures

#: The eight negotiated lists (RFC 4253 names) and the kind of failure each one is.
LISTS = tuple(LIST_CATEGORY)
KIND_OF_LIST = LIST_CATEGORY
PREAUTH = " [preauth]"


def recorder() -> ModuleType:
    """scripts/record_captures.py, imported as a module (it is a script, not a package)."""
    name = "kexproxy_record_captures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "record_captures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def the_record(pcap: Path) -> SessionRecord:
    records = capture_records(str(pcap))
    assert len(records) == 1, [r.outcome for r in records]
    assert_valid_record(records[0])
    return records[0]


def assert_matches_peers(record: SessionRecord, meta: dict[str, Any]) -> None:
    """The record against one recording's metadata: the peers' own words and tshark's fields."""
    server, client, wire = meta["server"], meta["client"], meta["wire"]
    assert record.server["port"] == server["port"]
    assert record.client["port"] == client["port"]

    # Banners, as tshark decoded them, each on its side.
    banners = {b["direction"]: b["banner"] for b in wire["banners"]}
    assert record.client_banner == banners.get("client-to-server")
    assert record.server_banner == banners.get("server-to-client")

    # Every list of every KEXINIT, the HASSH and HASSHServer, as tshark decoded them.
    for row in wire["kexinits"]:
        side = record.client_kexinit if row["direction"] == "client-to-server" else None
        side = record.server_kexinit if row["direction"] == "server-to-client" else side
        assert side is not None, row["direction"]
        for rfc in LISTS:
            assert ",".join(side[rfc]) == row[f"ssh.{rfc}"], rfc
        if row["direction"] == "client-to-server":
            assert record.hassh == row["ssh.kex.hassh"]
        else:
            assert record.hassh_server == row["ssh.kex.hasshserver"]
    kexinit_sides = {row["direction"] for row in wire["kexinits"]}
    assert (record.client_kexinit is not None) == ("client-to-server" in kexinit_sides)
    assert (record.server_kexinit is not None) == ("server-to-client" in kexinit_sides)

    # DISCONNECTs on the wire are evidence, with their reason codes.
    sent = [(d["port"], d["reason"], d["description"]) for d in wire["disconnects"]]
    seen = [
        (
            record.client["port"] if d["sender"] == "client" else record.server["port"],
            d["reason_code"],
            d["description"],
        )
        for d in record.evidence["disconnects"]
    ]
    assert seen == sent

    # The outcome, and each side's rejection in its own words.
    if meta["outcome"] == "success":
        assert record.outcome == "negotiated"
        assert record.failures == [] and not any(record.rejections.values())
        return
    if meta["outcome"] == "banner-refused":
        assert record.outcome == "aborted"
        assert record.evidence["banner_error"] == client["message"]
        return
    assert meta["outcome"] == "negotiation-failed"
    if len(kexinit_sides) < 2:
        # plink read sshd's KEXINIT and gave up before sending its own: nothing to negotiate.
        assert record.outcome == "incomplete"
        assert server["message"].startswith("Connection closed by")
        return
    assert record.outcome == "failed"
    failing_kinds = {KIND_OF_LIST[f] for f in record.failing_lists}
    assert meta["failure"] in failing_kinds, (meta["failure"], record.failing_lists)
    if client["software"] == "ssh":
        assert record.rejections["client"]["message"] == client["message"]
    if server["software"] == "sshd" and server["message"].startswith("Unable to negotiate"):
        assert record.rejections["server"]["message"] == server["message"].removesuffix(PREAUTH)
    # Each side's own words (`native`), as that real peer printed or logged them.
    for role, peer in (("client", client), ("server", server)):
        native = record.rejections[role]["native"]
        if peer["software"] == "dbclient":
            # Its line quotes the user and host as typed, which the wire does not show.
            assert peer["message"].endswith(f" exited: {native}"), (native, peer["message"])
        elif peer["software"] == "sshd" and not peer["message"].startswith("Unable to negotiate"):
            assert native == record.rejections[role]["message"]
        else:
            assert native == peer["message"].removesuffix(PREAUTH), (native, peer["message"])


def _meta(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_each_committed_capture_matches_what_its_peers_said(name: str) -> None:
    meta = _meta(name)
    assert_matches_peers(the_record(CAPTURES / meta["pcap"]), meta)


#: Scenarios of scripts/record_captures.py recorded afresh by the test; a pair is one
#: scenario and the other way the same race can go (plink may give up before its KEXINIT).
FRESH: dict[str, tuple[str, ...]] = {
    "openssh-success": ("openssh-success",),
    "openssh-kex-fail": ("openssh-kex-fail",),
    "openssh-hostkey-fail": ("openssh-hostkey-fail",),
    "openssh-cipher-fail": ("openssh-cipher-fail",),
    "openssh-mac-fail": ("openssh-mac-fail",),
    "openssh-dh-gex": ("openssh-dh-gex",),
    "dropbear-client-kex-fail": ("dropbear-client-kex-fail",),
    "dropbear-client-cipher-fail": ("dropbear-client-cipher-fail",),
    "dropbear-server-kex-fail": ("dropbear-server-kex-fail",),
    "plink-kex-fail": ("plink-kex-fail", "plink-kex-fail-no-client-kexinit"),
    "plink-mac-fail": ("plink-mac-fail",),
    "banner-refused": ("banner-refused",),
}
ATTEMPTS = 8


@pytest.mark.peers
@pytest.mark.parametrize("name", list(FRESH))
def test_a_fresh_capture_matches_what_the_peers_say_now(name: str, tmp_path: Path) -> None:
    rc = recorder()
    by_name = {s.name: s for s in rc.SCENARIOS}
    scenarios = [by_name[n] for n in FRESH[name]]
    missing = rc.missing_tools(scenarios)
    if missing:
        peers.which_or_skip(missing[0])
    versions: dict[str, str] = {}
    errors: list[str] = []
    for attempt in range(ATTEMPTS):
        scenario = scenarios[attempt % len(scenarios)]
        # Retries only for a timing race of the peers (the scenario's own checks of what
        # tshark must see); the comparison with the record is never retried.
        scenario = replace(scenario, attempts=1)
        try:
            meta = rc.record(scenario, tmp_path / f"try{attempt}", versions)
        except rc.RecordError as exc:
            errors.append(str(exc).splitlines()[0])
            continue
        break
    else:
        pytest.fail(f"{name}: the peers did not produce the scenario: {errors}")
    pcap = tmp_path / f"try{attempt}" / meta["pcap"]
    record = the_record(pcap)
    assert_matches_peers(record, meta)
    # And tshark on the very file the record came from, once more, for the lists.
    rows = peers.tshark_kexinit_rows(pcap, meta["server"]["port"])
    assert len(rows) == len(meta["wire"]["kexinits"])
