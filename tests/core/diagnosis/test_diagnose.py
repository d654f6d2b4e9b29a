"""The diagnosis as a whole: `diagnose`, the `diagnosed` stage, hints kept apart from banners."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kexproxy.core.catalogue import GRADES, catalogue
from kexproxy.core.diagnosis import diagnose, diagnosed
from kexproxy.core.record import SessionRecord
from tests.core.diagnosis.records import diag, make_record

ROOT = Path(__file__).resolve().parents[3]


def test_version_hint_never_reads_the_banner() -> None:
    truthful = make_record()
    lying = make_record(client_banner="SSH-2.0-OpenSSH_10.5", server_banner="SSH-2.0-Cisco-1.25")
    assert diag(truthful)["version_hint"] == diag(lying)["version_hint"]
    assert "never the banner" in diag(lying)["version_hint"]["caveat"]
    assert "CVE" not in str(diag(lying)["version_hint"])


def test_unknown_names_are_listed_never_raised() -> None:
    record = make_record(
        client={"kex": "x-weird@example.com,curve25519-sha256", "mac": "\x1b[31mred"}
    )
    assert diag(record)["unknown"]["client"] == ["x-weird@example.com", "\x1b[31mred"]


NAMES = st.sampled_from(
    [*sorted({a.name for a in catalogue() if not a.prefix}), "", "zzz", "gss-group14-sha256-abc"]
)


NAME_LIST = st.lists(NAMES | st.text(min_size=1, max_size=12), max_size=6).map(",".join)


@settings(max_examples=100, deadline=None)
@given(
    client=st.fixed_dictionaries(
        dict.fromkeys(("kex", "host_key", "cipher", "mac", "compression"), NAME_LIST)
    ),
    server=st.fixed_dictionaries(
        dict.fromkeys(("kex", "host_key", "cipher", "mac", "compression"), NAME_LIST)
    ),
    banner=st.sampled_from(
        [
            "SSH-2.0-OpenSSH_9.2p1",
            "SSH-2.0-OpenSSH_5.3",
            "SSH-2.0-dropbear",
            "",
            "SSH-2.0-OpenSSH_x.y",
        ]
    ),
)
def test_any_offers_give_a_diagnosis(
    client: dict[str, str], server: dict[str, str], banner: str
) -> None:
    """Whatever the peers send, the diagnosis is built; every fix adds a name the other side offers."""
    record = make_record(client, server, client_banner=banner, server_banner=banner)
    d = diag(record)
    offers = {"client": record.server_kexinit or {}, "server": record.client_kexinit or {}}
    for fix in d["fixes"]:
        for rfc in fix["lists"]:
            assert fix["add"] in offers[fix["side"]][rfc]
    if record.failures:
        assert d["grade"] is None
    else:
        assert d["grade"] in (*GRADES, None)  # None: nothing in it is known
        if d["grade"] == "strong":
            assert catalogue().grade(str((record.negotiated or {})["kex"]), "kex") == "strong"


def test_every_record_of_every_capture_carries_a_valid_diagnosis() -> None:
    """Every connection of every capture is diagnosed, whatever its outcome, within the schema."""
    import json
    from pathlib import Path

    import jsonschema

    from kexproxy.pipeline import capture_records
    from kexproxy.schema import session_record_schema

    root = Path(__file__).resolve().parents[3]
    validator = jsonschema.Draft202012Validator(session_record_schema())
    captures = sorted((root / "tests" / "data" / "public").glob("*.pcap*"))
    captures += sorted((root / "captures").glob("*.pcap*"))
    outcomes = set()
    for path in captures:
        for record in capture_records(str(path), include_non_ssh=True):
            assert record.diagnosis is not None
            outcomes.add(record.outcome)
            validator.validate(json.loads(json.dumps(record.to_dict())))
    assert {"negotiated", "failed", "incomplete"} <= outcomes


def test_diagnosed_fills_the_diagnosis_and_nothing_else() -> None:
    record = replace(make_record(server={"kex": "diffie-hellman-group14-sha1"}), diagnosis=None)
    out = diagnosed(record)
    assert out.diagnosis == diagnose(record)
    assert out.diagnosis is not None and out.diagnosis["fixes"]
    assert replace(out, diagnosis=None) == record
    assert record.diagnosis is None
    # Diagnosing reads no earlier diagnosis, so running the stage twice changes nothing.
    assert diagnosed(out) == out


def _only_record(path: str) -> SessionRecord:
    from kexproxy.pipeline import capture_records

    records = list(capture_records(str(ROOT / path)))
    assert len(records) == 1, path
    return records[0]


def test_real_captures_post_quantum_is_strong_and_modern_classical_good() -> None:
    """Real peers: OpenSSH 9.2 to itself (sntrup761), OpenSSH 10.2 to 9.9 (ML-KEM) are strong;
    OpenSSH 9.2 to dropbear 2022.83 (curve25519, no post-quantum there) is good, and an
    OpenSSH 10.1+ client would print its warning for that pair."""
    for path, kex in (
        ("captures/openssh-success.pcap", "sntrup761x25519-sha512"),
        ("tests/data/public/zeek-ssh-ssh_kex_mlkem.pcap", "mlkem768x25519-sha256"),
    ):
        record = _only_record(path)
        d = record.diagnosis or {}
        assert (record.negotiated or {})["kex"] == kex
        assert (d["grade"], d["reasons"]) == ("strong", []), path
        assert d["post_quantum"]["openssh_warning"] is False
    record = _only_record("captures/dropbear-server-success.pcap")
    d = record.diagnosis or {}
    assert (record.negotiated or {})["kex"] == "curve25519-sha256"
    assert (d["grade"], d["reasons"]) == ("good", [])
    pq = d["post_quantum"]
    assert pq["post_quantum"] is False and "the server offers no post-quantum" in pq["reason"]
    assert pq["openssh_warning"] is True
    assert pq["openssh_warning_text"].startswith(
        "** WARNING: connection is not using a post-quantum key exchange algorithm."
    )
