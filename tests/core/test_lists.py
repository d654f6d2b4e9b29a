"""The registry of the SSH name-lists, and the tables derived from it elsewhere in the core."""

from __future__ import annotations

import pytest

from kexproxy.core import lists
from kexproxy.core.catalogue import LIST_CATEGORY
from kexproxy.core.events import KexInit
from kexproxy.core.negotiation import CHECK_ORDER
from tests.builders import kexinit_event, offer


def test_the_ten_lists_in_wire_order() -> None:
    assert lists.RFC_NAMES == (
        "kex_algorithms",
        "server_host_key_algorithms",
        "encryption_algorithms_client_to_server",
        "encryption_algorithms_server_to_client",
        "mac_algorithms_client_to_server",
        "mac_algorithms_server_to_client",
        "compression_algorithms_client_to_server",
        "compression_algorithms_server_to_client",
        "languages_client_to_server",
        "languages_server_to_client",
    )
    assert len(lists.NEGOTIATED) == 8 and len(lists.FIELD_BY_RFC) == 8


def test_lists_for_a_direction() -> None:
    assert [n.rfc for n in lists.lists_for("s2c")] == [
        "kex_algorithms",
        "server_host_key_algorithms",
        "encryption_algorithms_server_to_client",
        "mac_algorithms_server_to_client",
        "compression_algorithms_server_to_client",
    ]


def test_kind_of_a_list_by_rfc_name_or_record_key() -> None:
    assert lists.kind_of("mac_c2s") == lists.kind_of("mac_algorithms_server_to_client")
    assert lists.kind_of("kex").keyword == "KexAlgorithms"
    assert lists.kind_of("server_host_key_algorithms").label == "host key"
    with pytest.raises(KeyError):
        lists.kind_of("languages_client_to_server")
    with pytest.raises(KeyError):
        lists.kind_of("nonsense")


def test_derived_tables_agree_with_the_registry() -> None:
    assert {n.rfc: n.kind for n in lists.NEGOTIATED} == LIST_CATEGORY
    for role in ("client", "server"):
        assert sorted(CHECK_ORDER[role]) == sorted(lists.BY_FIELD)
    assert set(lists.CLIENT_MARKERS) == {"ext-info-c", "kex-strict-c-v00@openssh.com"}
    assert set(lists.SERVER_MARKERS) == {"ext-info-s", "kex-strict-s-v00@openssh.com"}


def test_a_kexinit_reads_each_list_by_its_rfc_name() -> None:
    sent: KexInit = kexinit_event(offer(ciphers="aes256-ctr", languages="en"))
    assert sent.raw("encryption_algorithms_server_to_client") == "aes256-ctr"
    assert sent.raw("languages_server_to_client") == "en"
    assert list(sent.to_dict())[1:11] == list(lists.RFC_NAMES)
