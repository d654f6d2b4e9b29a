"""diagnose_tls on records shaped like tls-spec.md's, with the offers real peers sent (s_client, curl)."""

from __future__ import annotations

from typing import Any

from kexproxy.core.implementations import STEP_KINDS
from kexproxy.core.tls.advice import diagnose_tls
from kexproxy.present import STEP_LABEL

#: What `openssl s_client -tls1 -cipher DEFAULT:@SECLEVEL=0` (OpenSSL 3.0) offered, in part.
TLS10_OFFER = {
    "versions": ["TLS 1.0"],
    "cipher_suites": [
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    ],
    "supported_groups": ["x25519", "secp256r1", "x448", "secp521r1", "secp384r1"],
}


def failed(
    lists: list[str], offer: dict[str, list[str]], server_offer: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    return {
        "protocol": "tls",
        "outcome": "failed",
        "server": {"ip": "127.0.0.1", "port": 8443},
        "client_hello": offer,
        "negotiated": None,
        "failures": [
            {
                "list": n,
                "client_offer": offer.get(n, []),
                "server_offer": (server_offer or {}).get(n),
            }
            for n in lists
        ],
    }


def negotiated(version: str, suite: str, group: str) -> dict[str, Any]:
    return {
        "protocol": "tls",
        "outcome": "negotiated",
        "client_hello": {
            "versions": ["TLS 1.3", "TLS 1.2"],
            "supported_groups": ["X25519MLKEM768", "x25519"],
        },
        "negotiated": {
            "versions": version,
            "cipher_suites": suite,
            "supported_groups": group,
            "signature_algorithms": "rsa_pss_rsae_sha256",
            "alpn": None,
        },
        "failures": [],
    }


def test_a_success_is_graded_with_its_post_quantum_verdict() -> None:
    plain = diagnose_tls(negotiated("TLS 1.3", "TLS_AES_128_GCM_SHA256", "x25519"))
    assert plain["grade"] == "good" and plain["recipes"] == []
    assert plain["post_quantum"] == {
        "post_quantum": False,
        "group": "x25519",
        "client_offered": ["X25519MLKEM768"],
    }
    assert plain["parts"]["supported_groups"]["source"]
    hybrid = diagnose_tls(negotiated("TLS 1.3", "TLS_AES_128_GCM_SHA256", "X25519MLKEM768"))
    assert hybrid["grade"] == "strong" and hybrid["post_quantum"]["post_quantum"] is True
    old = diagnose_tls(negotiated("TLS 1.2", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "x25519"))
    assert old["grade"] == "broken" and "Sweet32" in old["reasons"][0]


def test_a_tls10_client_is_moved_up_first_and_the_server_told_what_lowering_costs() -> None:
    diagnosis = diagnose_tls(failed(["versions"], TLS10_OFFER))
    assert diagnosis["grade"] is None
    first = diagnosis["recipes"][0]
    assert (first["side"], first["grade"], first["command"]) == (
        "client",
        "good",
        "openssl s_client -connect 127.0.0.1:8443 -min_protocol TLSv1.2 -max_protocol TLSv1.3",
    )
    by_software = {
        r["software"].get("server"): r for r in diagnosis["recipes"] if r["side"] == "server"
    }
    nginx = by_software["nginx"]
    assert nginx["steps"][0]["text"] == (
        "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\nssl_ciphers DEFAULT:@SECLEVEL=0;"
    )
    assert nginx["grade"] == "broken" and "RFC 8996" in nginx["warnings"][0]
    assert "separate instance" in nginx["scope"]
    assert [r["rank"] for r in diagnosis["recipes"]] == list(
        range(1, len(diagnosis["recipes"]) + 1)
    )
    ranks = [
        r["side"] for r in diagnosis["recipes"] if any(s["kind"] != "note" for s in r["steps"])
    ]
    assert ranks.index("server") > ranks.index("client")


def test_the_server_adds_only_the_strongest_name_the_client_offered() -> None:
    offer = {
        "versions": ["TLS 1.2"],
        "cipher_suites": ["TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"],
    }
    diagnosis = diagnose_tls(failed(["cipher_suites"], offer))
    server = [r for r in diagnosis["recipes"] if r["side"] == "server"]
    assert {a["name"] for r in server for a in r["adds"]} == {"TLS_RSA_WITH_AES_128_CBC_SHA"}
    apache = next(r for r in server if r["software"]["server"] == "Apache httpd")
    assert apache["steps"][0]["text"] == "SSLCipherSuite DEFAULT:AES128-SHA"
    assert all(r["grade"] == "weak" for r in server)


def test_a_client_is_never_told_to_guess_what_an_unprobed_server_offers() -> None:
    offer = {"versions": ["TLS 1.3", "TLS 1.2"]}
    diagnosis = diagnose_tls(failed(["versions"], offer))
    assert not [r for r in diagnosis["recipes"] if r["side"] == "client"]
    assert any("kexproxy probe" in line for line in diagnosis["real_fix"])
    probed = diagnose_tls(failed(["versions"], offer, {"versions": ["TLS 1.0"]}))
    java = next(r for r in probed["recipes"] if r["software"].get("client") == "Java")
    assert java["steps"][0]["kind"] == "java_security"
    assert java["steps"][0]["text"].startswith(
        "jdk.tls.disabledAlgorithms=SSLv3, TLSv1.1, DTLSv1.0"
    )
    assert java["command"] == "java -Djava.security.properties=tls-override.security <the program>"


def test_tls13_suites_python_cannot_choose_get_a_note() -> None:
    offer = {"versions": ["TLS 1.3"], "cipher_suites": ["TLS_AES_128_CCM_SHA256"]}
    diagnosis = diagnose_tls(failed(["cipher_suites"], offer))
    python = next(r for r in diagnosis["recipes"] if r["software"].get("client") == "Python ssl")
    assert [s["kind"] for s in python["steps"]] == ["note"]
    assert "OPENSSL_CONF" in python["steps"][0]["text"]
    openssl = next(
        r for r in diagnosis["recipes"] if r["software"].get("server") == "OpenSSL (openssl.cnf)"
    )
    assert openssl["steps"][0]["text"].endswith(
        "Ciphersuites = TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256"
    )
    assert openssl["grade"] == "strong"


def test_a_refused_certificate_gets_trust_never_a_verification_switch() -> None:
    diagnosis = diagnose_tls(failed(["certificate"], {"versions": ["TLS 1.3"]}))
    texts = [s["text"] for r in diagnosis["recipes"] for s in r["steps"]]
    assert "-CAfile ca.pem" in texts and "--cacert ca.pem" in texts
    assert 'ctx.load_verify_locations("ca.pem")' in texts
    assert not any(
        word in t for t in texts for word in ("--insecure", "-k ", "CERT_NONE", "verify_mode")
    )
    server = [r for r in diagnosis["recipes"] if r["side"] == "server"]
    assert server and all(s["kind"] == "note" for r in server for s in r["steps"])


def test_lists_without_a_recipe_are_said_so() -> None:
    diagnosis = diagnose_tls(failed(["server_name"], {"versions": ["TLS 1.3"]}))
    assert diagnosis["recipes"] == []
    assert "server_name" in diagnosis["real_fix"][0]


def test_every_tls_step_kind_is_a_step_kind_with_a_label() -> None:
    records = [
        failed(["versions"], TLS10_OFFER),
        failed(["versions"], {"versions": ["TLS 1.2"]}, {"versions": ["TLS 1.0"]}),
        failed(["supported_groups"], {"versions": ["TLS 1.3"], "supported_groups": ["secp521r1"]}),
        failed(["certificate"], {"versions": ["TLS 1.3"]}),
    ]
    kinds = {
        s["kind"] for r in records for recipe in diagnose_tls(r)["recipes"] for s in recipe["steps"]
    }
    assert kinds == {
        "openssl_conf",
        "nginx_conf",
        "apache_conf",
        "s_client_option",
        "curl_option",
        "python_ssl",
        "java_security",
        "note",
    }
    assert kinds <= set(STEP_KINDS) and kinds <= set(STEP_LABEL)
