"""The algorithm catalogue: complete for every name seen, consistent, and graded by its sources."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kexproxy.core.catalogue import (
    CATEGORIES,
    DEFAULT_LISTS,
    LIST_CATEGORY,
    Catalogue,
    catalogue,
    version_key,
)

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "tests" / "data" / "public"
#: zeek's kex-quadratic capture is a fuzz case: 1000 made-up names (ak0, bh17, ...) per list.
SYNTHETIC = re.compile(r"^[ab][a-z]{1,4}\d+$")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return catalogue()


def _expected_names() -> list[tuple[str, str, str]]:
    """(file, rfc list, name) for every KEXINIT name in EXPECTED.json's public captures."""
    out = []
    for entry in json.loads((PUBLIC / "EXPECTED.json").read_text()):
        for conn in entry.get("connections", []):
            for side in ("client_kexinit", "server_kexinit"):
                kexinit = conn.get(side) or {}
                for rfc in LIST_CATEGORY:
                    for name in str(kexinit.get(rfc, "")).split(","):
                        if name and not SYNTHETIC.match(name):
                            out.append((entry["file"], rfc, name))
    return out


def test_every_name_in_the_public_captures_is_known(cat: Catalogue) -> None:
    names = _expected_names()
    assert len({n for _f, _l, n in names}) > 90
    unknown = sorted({(rfc, n, f) for f, rfc, n in names if cat.lookup_in_list(n, rfc) is None})
    assert unknown == []


def test_every_name_in_the_recorded_captures_is_known(cat: Catalogue) -> None:
    from kexproxy.pipeline import capture_records

    captures = sorted((ROOT / "captures").glob("*.pcap*"))
    assert captures, "captures/ holds the recorded captures"
    unknown = set()
    for path in captures:
        for record in capture_records(str(path)):
            for kexinit in (record.client_kexinit, record.server_kexinit):
                for rfc in LIST_CATEGORY:
                    for name in (kexinit or {}).get(rfc, []):
                        if cat.lookup_in_list(name, rfc) is None:
                            unknown.add((rfc, name, path.name))
    assert sorted(unknown) == []


def test_every_default_list_of_the_history_is_known(cat: Catalogue) -> None:
    history = cat.history
    categories = {"kex": "kex", "host": "host_key", "cipher": "cipher", "mac": "mac"}
    for era in history.eras:
        for key in DEFAULT_LISTS:
            category = categories[key.split("_")[-1] if key != "host_key" else "host"]
            for name in era.lists[key]:
                algorithm = cat.lookup(name, category)  # type: ignore[arg-type]
                assert algorithm is not None, (era.start, key, name)
                assert algorithm.in_openssh(era.start), (era.start, name)
    for key, names in history.dropbear.items():
        category = (
            "compression"
            if key.startswith("compression")
            else categories[key.split("_")[-1] if key != "host_key" else "host"]
        )
        for name in names:
            assert cat.lookup(name, category) is not None, (key, name)  # type: ignore[arg-type]
    for name in (*history.compression_client, *history.compression_server):
        assert cat.lookup(name, "compression") is not None


def test_data_is_consistent(cat: Catalogue) -> None:
    """Grades follow the written rule from the issues; every key points somewhere."""
    severity_order = {"note": 0, "weak": 1, "broken": 2}
    for algorithm in cat:
        assert algorithm.category in CATEGORIES
        assert algorithm.reason and "\n" not in algorithm.reason, algorithm.name
        assert algorithm.sources, algorithm.name
        for source in algorithm.sources:
            assert source in cat.sources, (algorithm.name, source)
        for issue in algorithm.issues:
            assert issue in cat.issues, (algorithm.name, issue)
            for source in cat.issues[issue].sources:
                assert source in cat.sources
        if algorithm.is_marker:
            assert algorithm.grade is None
            continue
        worst = max(
            (str(cat.issues[i].severity) for i in algorithm.issues),
            key=lambda severity: severity_order[severity],
            default="note",
        )
        expected = worst
        if worst == "note":
            pq_kex = algorithm.category == "kex" and algorithm.post_quantum
            expected = "strong" if pq_kex else "good"
        assert algorithm.grade == expected, (algorithm.name, algorithm.grade, algorithm.issues)


def test_rfc9142_guidance_sets_the_floor(cat: Catalogue) -> None:
    """RFC 9142 section 4: MUST NOT is broken, SHOULD NOT is never good."""
    seen = {"MUST NOT": 0, "SHOULD NOT": 0}
    for algorithm in cat:
        if algorithm.rfc9142 == "MUST NOT":
            seen["MUST NOT"] += 1
            assert algorithm.grade == "broken", algorithm.name
        if algorithm.rfc9142 == "SHOULD NOT":
            seen["SHOULD NOT"] += 1
            assert algorithm.grade != "good", algorithm.name
        if algorithm.rfc9142:
            assert "rfc9142" in algorithm.sources
    assert seen == {"MUST NOT": 1, "SHOULD NOT": 5}


@pytest.mark.parametrize(
    ("name", "category", "grade", "source"),
    [
        # RFC 9142 and SP 800-131A: 1024-bit groups and RSA-1024 key transport.
        ("diffie-hellman-group1-sha1", "kex", "broken", "rfc9142"),
        ("rsa1024-sha1", "kex", "broken", "rfc4432"),
        ("diffie-hellman-group14-sha1", "kex", "weak", "rfc9142"),
        ("diffie-hellman-group-exchange-sha1", "kex", "weak", "rfc9142"),
        # A classical key exchange is good (post-quantum is its own verdict); a hybrid strong.
        ("diffie-hellman-group14-sha256", "kex", "good", "rfc8268"),
        ("curve25519-sha256", "kex", "good", "rfc8731"),
        ("ecdh-sha2-nistp256", "kex", "good", "safecurves"),
        ("ecdh-sha2-1.2.840.10045.3.1.1", "kex", "broken", "rfc5656"),
        ("sntrup761x25519-sha512@openssh.com", "kex", "strong", "sntrup-draft"),
        ("mlkem768x25519-sha256", "kex", "strong", "mlkem-draft"),
        ("mlkem768nistp256-sha256", "kex", "strong", "nistir8547"),
        ("x25519-kyber-512r3-sha256-d00@amazon.com", "kex", "weak", "kyber-draft"),
        # RFC 8332 (RSA with SHA-2) and RFC 8709 (EdDSA); FIPS 186-5 for DSA. SHA-1
        # signatures are under 80-bit collision strength (SP 800-57), off since OpenSSH 8.8.
        ("ssh-rsa", "host_key", "broken", "openssh-8.8"),
        ("ssh-rsa-cert-v01@openssh.com", "host_key", "broken", "sp800-57"),
        ("x509v3-ssh-rsa", "host_key", "broken", "shambles"),
        ("rsa-sha2-256", "host_key", "good", "rfc8332"),
        ("rsa-sha2-512", "host_key", "good", "rfc8332"),
        ("ssh-ed25519", "host_key", "good", "rfc8709"),
        ("ssh-ed448", "host_key", "good", "rfc8709"),
        ("ssh-dss", "host_key", "broken", "fips186-5"),
        ("ssh-dss-cert-v01@openssh.com", "host_key", "broken", "openssh-certkeys"),
        # RFC 8758 (RC4), SP 800-131A and Sweet32 (3DES), CVE-2008-5161 (CBC), Terrapin.
        ("arcfour", "cipher", "broken", "rfc8758"),
        ("arcfour256", "cipher", "broken", "rfc8758"),
        ("3des-cbc", "cipher", "broken", "sweet32"),
        # A 64-bit block: the reason NIST retired 3DES holds for every such cipher.
        ("blowfish-cbc", "cipher", "broken", "sp800-67"),
        ("cast128-ctr", "cipher", "broken", "sweet32"),
        ("aes128-cbc", "cipher", "weak", "albrecht2009"),
        ("aes256-ctr", "cipher", "good", "rfc4344"),
        ("aes256-gcm@openssh.com", "cipher", "good", "rfc5647"),
        ("chacha20-poly1305@openssh.com", "cipher", "good", "terrapin"),
        ("none", "cipher", "broken", "rfc4253"),
        # MACs: SHA-1 and MD5 weak, encrypt-and-MAC weak, EtM with SHA-2 good.
        ("hmac-sha1", "mac", "weak", "rfc4253"),
        ("hmac-md5-96", "mac", "weak", "rfc6151"),
        ("hmac-sha2-256", "mac", "weak", "rfc6668"),
        ("hmac-sha2-256-etm@openssh.com", "mac", "good", "openssh-protocol"),
        ("umac-64-etm@openssh.com", "mac", "good", "openssh-protocol"),
        ("none", "mac", "broken", "rfc4253"),
        # Compression: pre-authentication zlib exposes the decompressor.
        ("zlib", "compression", "weak", "rfc4253"),
        ("zlib@openssh.com", "compression", "good", "openssh-protocol"),
        ("none", "compression", "good", "rfc4253"),
    ],
)
def test_grades_match_their_sources(
    cat: Catalogue, name: str, category: str, grade: str, source: str
) -> None:
    algorithm = cat.lookup(name, category)  # type: ignore[arg-type]
    assert algorithm is not None
    assert algorithm.grade == grade
    cited = set(algorithm.sources) | {s for i in algorithm.issues for s in cat.issues[i].sources}
    assert source in cited


def test_weakness_families_are_applied_everywhere(cat: Catalogue) -> None:
    """A property of the data, not of single entries: every member of a family carries it."""
    for algorithm in cat:
        if algorithm.category == "cipher" and algorithm.block_bits == 64:
            assert "64-bit-block" in algorithm.issues, algorithm.name
            assert algorithm.grade == "broken", algorithm.name
        if algorithm.category == "host_key" and algorithm.key_type == "rsa":
            sha2 = re.search(r"sha(2|224|256|384|512)", algorithm.name) is not None
            assert sha2 != ("sha1-signature" in algorithm.issues), algorithm.name
            assert sha2 or algorithm.grade == "broken", algorithm.name
        if algorithm.category == "cipher" and algorithm.mode == "cbc":
            assert "cbc" in algorithm.issues and algorithm.grade != "good", algorithm.name
        if algorithm.category == "mac" and algorithm.etm is False and algorithm.name != "none":
            assert "encrypt-and-mac" in algorithm.issues, algorithm.name
        if "sha1" in algorithm.name and not algorithm.is_marker:
            assert "sha1" in algorithm.issues, algorithm.name
        if "md5" in algorithm.name:
            assert "md5" in algorithm.issues, algorithm.name
        # Only a post-quantum hybrid key exchange is strong; being classical lowers nothing.
        if algorithm.grade == "strong":
            assert algorithm.category == "kex" and algorithm.post_quantum, algorithm.name
        if algorithm.category == "kex" and algorithm.post_quantum and not algorithm.issues:
            assert algorithm.grade == "strong", algorithm.name
        if algorithm.dh_bits is not None and algorithm.dh_bits < 2048:
            assert algorithm.grade == "broken", algorithm.name


def test_post_quantum_names(cat: Catalogue) -> None:
    pq = {a.name for a in cat if a.category == "kex" and a.post_quantum}
    assert {
        "mlkem768x25519-sha256",
        "mlkem768nistp256-sha256",
        "mlkem1024nistp384-sha384",
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
    } <= pq
    assert "curve25519-sha256" not in pq


def test_markers_are_known_as_markers(cat: Catalogue) -> None:
    for name in (
        "ext-info-c",
        "ext-info-s",
        "kex-strict-c-v00@openssh.com",
        "kex-strict-s-v00@openssh.com",
        "kexguess2@matt.ucc.asn.au",
        "ping@openssh.com",
    ):
        assert cat.is_marker(name)
        algorithm = cat.lookup(name, "kex")
        assert algorithm is not None and algorithm.is_marker and algorithm.grade is None
        assert cat.grade(name, "kex") == "marker"


def test_unknown_names_are_unknown_never_errors(cat: Catalogue) -> None:
    for name in ("", "x" * 5000, "ak0", "\x1b[31m", "aes128-ctr ", "AES128-CTR"):
        for category in CATEGORIES:
            assert cat.lookup(name, category) is None or cat.lookup(name, category).name == name  # type: ignore[union-attr]
        assert cat.grade(name, "cipher") == "unknown"


def test_gss_names_match_by_prefix(cat: Catalogue) -> None:
    algorithm = cat.lookup("gss-group14-sha256-toWM5Slw5Ew8Mqkay+al2g==", "kex")
    assert algorithm is not None and algorithm.name == "gss-group14-sha256-*"
    assert algorithm.dh_bits == 2048 and algorithm.grade == "good"
    assert cat.grade("gss-group1-sha1-toWM5Slw5Ew8Mqkay+al2g==", "kex") == "broken"
    assert cat.lookup("gss-group14-sha256-x", "cipher") is None


def _span(cat: Catalogue, name: str, category: str, role: str) -> list[tuple[str, str | None]]:
    algorithm = cat.lookup(name, category)  # type: ignore[arg-type]
    assert algorithm is not None
    spans = (
        algorithm.openssh_client_default if role == "client" else algorithm.openssh_server_default
    )
    return [(s.entered, s.left) for s in spans]


@pytest.mark.parametrize(
    ("name", "category", "role", "spans"),
    [
        # ssh-facts.md, "OpenSSH default-algorithm history"
        ("diffie-hellman-group1-sha1", "kex", "client", [("6.1", "7.0")]),
        ("diffie-hellman-group1-sha1", "kex", "server", [("6.1", "6.7")]),
        ("diffie-hellman-group-exchange-sha1", "kex", "client", [("6.1", "8.0")]),
        ("diffie-hellman-group-exchange-sha1", "kex", "server", [("6.1", "6.7")]),
        ("diffie-hellman-group14-sha1", "kex", "server", [("6.1", "8.2")]),
        ("diffie-hellman-group14-sha256", "kex", "client", [("7.3", None)]),
        ("diffie-hellman-group14-sha256", "kex", "server", [("7.3", "10.0")]),
        ("curve25519-sha256@libssh.org", "kex", "server", [("6.5", None)]),
        ("curve25519-sha256", "kex", "client", [("7.4", None)]),
        ("sntrup761x25519-sha512@openssh.com", "kex", "client", [("8.9", None)]),
        ("sntrup761x25519-sha512", "kex", "client", [("9.9", None)]),
        ("mlkem768x25519-sha256", "kex", "server", [("9.9", None)]),
        ("ssh-rsa", "host_key", "client", [("6.1", "8.8")]),
        ("ssh-dss", "host_key", "client", [("6.1", "7.0")]),
        ("rsa-sha2-512", "host_key", "client", [("7.2", None)]),
        ("rsa-sha2-256-cert-v01@openssh.com", "host_key", "client", [("7.8", None)]),
        ("sk-ssh-ed25519@openssh.com", "host_key", "server", [("8.2", None)]),
        ("webauthn-sk-ecdsa-sha2-nistp256@openssh.com", "host_key", "client", [("10.3", None)]),
        ("ssh-ed25519", "host_key", "client", [("6.5", None)]),
        ("chacha20-poly1305@openssh.com", "cipher", "server", [("6.5", None)]),
        ("aes128-gcm@openssh.com", "cipher", "client", [("6.2", None)]),
        ("3des-cbc", "cipher", "client", [("6.1", "7.4")]),
        ("3des-cbc", "cipher", "server", [("6.1", "6.7")]),
        ("aes128-cbc", "cipher", "client", [("6.1", "7.6")]),
        ("arcfour256", "cipher", "client", [("6.1", "7.2")]),
        ("hmac-md5", "mac", "client", [("6.1", "7.2")]),
        ("hmac-md5", "mac", "server", [("6.1", "6.7")]),
        ("umac-128-etm@openssh.com", "mac", "server", [("6.2", None)]),
        ("hmac-sha1", "mac", "server", [("6.1", None)]),
        ("hmac-sha2-256-96", "mac", "client", []),
    ],
)
def test_default_history_matches_ssh_facts(
    cat: Catalogue, name: str, category: str, role: str, spans: list[tuple[str, str | None]]
) -> None:
    assert _span(cat, name, category, role) == spans


def test_current_defaults_are_those_of_10_5(cat: Catalogue) -> None:
    """ssh-facts.md's "Current defaults (V_10_5_P1), in order"."""
    history = cat.history
    assert history.releases[0] == "6.1" and history.releases[-1] == "10.5"
    starts = [version_key(e.start) for e in history.eras]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert history.defaults("10.5", "server", "kex") == (
        "mlkem768x25519-sha256",
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
    )
    assert history.defaults("10.5", "client", "kex")[8:] == (
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group14-sha256",
    )
    assert history.defaults("10.5", "client", "cipher") == (
        "chacha20-poly1305@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
    )
    assert len(history.defaults("10.5", "client", "host_key")) == 18
    assert history.defaults("10.5", "server", "mac")[0] == "umac-64-etm@openssh.com"
    assert history.defaults("10.5", "server", "compression") == ("none", "zlib@openssh.com")


def test_code_history(cat: Catalogue) -> None:
    dss = cat.lookup("ssh-dss", "host_key")
    assert dss is not None and dss.openssh_removed == "10.0"
    assert dss.in_openssh("9.9") and not dss.in_openssh("10.0")
    blowfish = cat.lookup("blowfish-cbc", "cipher")
    assert blowfish is not None and blowfish.in_openssh("7.5") and not blowfish.in_openssh("7.6")
    mlkem = cat.lookup("mlkem768x25519-sha256", "kex")
    assert mlkem is not None and not mlkem.in_openssh("9.8") and mlkem.in_openssh("9.9")
    never = cat.lookup("curve448-sha512", "kex")
    assert never is not None and not never.in_openssh("10.5")
    assert cat.lookup("aes128-cbc", "cipher").in_openssh("3.6")  # type: ignore[union-attr]


def test_dropbear_observed_defaults(cat: Catalogue) -> None:
    chacha = cat.lookup("chacha20-poly1305@openssh.com", "cipher")
    assert chacha is not None and chacha.dropbear_default == ("client", "server")
    zlib = cat.lookup("zlib", "compression")
    assert zlib is not None and zlib.dropbear_default == ("client",)
    assert cat.history.dropbear_version == "2022.83"


def test_version_hint_from_lists(cat: Catalogue) -> None:
    lists = cat.history.era_of("9.2").lists
    offers = {
        "kex": [*lists["client_kex"], "ext-info-c", "kex-strict-c-v00@openssh.com"],
        "host_key": list(reversed(lists["host_key"])),  # order does not matter
        "cipher": list(lists["client_cipher"]),
        "mac": list(lists["client_mac"]),
    }
    hint = cat.version_hint(offers, "client")  # type: ignore[arg-type]
    assert hint.text == "client lists match OpenSSH 8.9 to 9.8 defaults"
    assert hint.distance == 0 and "9.2" in hint.releases
    debian = {**offers, "kex": ["sntrup761x25519-sha512", *offers["kex"]]}
    near = cat.version_hint(debian, "client")  # type: ignore[arg-type]
    assert near.distance == 1 and "+sntrup761x25519-sha512" in near.text
    dropbear = cat.history.dropbear
    server = {
        "kex": dropbear["server_kex"],
        "cipher": dropbear["server_cipher"],
        "mac": dropbear["server_mac"],
    }
    hint = cat.version_hint(server, "server")  # type: ignore[arg-type]
    assert hint.dropbear and "Dropbear 2022.83" in hint.text
    far = cat.version_hint({"kex": ["foo"], "cipher": ["bar"], "mac": ["baz"]}, "server")
    assert far.text == "server lists match no OpenSSH default set of 6.1 to 10.5"
    assert far.releases == ()
