"""Message numbers and disconnect reasons by their RFC names."""

from __future__ import annotations

import pytest

from kexproxy.core.messages import DisconnectReason, Msg, disconnect_reason_name, message_name


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (2, "SSH_DISCONNECT_PROTOCOL_ERROR"),
        (3, "SSH_DISCONNECT_KEY_EXCHANGE_FAILED"),
        (11, "SSH_DISCONNECT_BY_APPLICATION"),
        (15, "SSH_DISCONNECT_ILLEGAL_USER_NAME"),
        (0, "SSH_DISCONNECT_UNKNOWN_0"),
        (16, "SSH_DISCONNECT_UNKNOWN_16"),
        (0xFFFFFFFF, "SSH_DISCONNECT_UNKNOWN_4294967295"),
    ],
)
def test_disconnect_reason_names(code: int, name: str) -> None:
    assert disconnect_reason_name(code) == name


def test_reason_codes_are_rfc_4250s() -> None:
    assert [r.value for r in DisconnectReason] == list(range(1, 16))


@pytest.mark.parametrize(
    ("number", "family", "name"),
    [
        (20, None, "SSH_MSG_KEXINIT"),
        (21, "gex", "SSH_MSG_NEWKEYS"),
        (7, None, "SSH_MSG_EXT_INFO"),
        (30, None, "SSH_MSG_30"),
        (30, "ecdh", "SSH_MSG_KEX_ECDH_INIT"),
        (30, "dh", "SSH_MSG_KEXDH_INIT"),
        (30, "gex", "SSH_MSG_KEX_DH_GEX_REQUEST_OLD"),
        (34, "gex", "SSH_MSG_KEX_DH_GEX_REQUEST"),
        (34, "ecdh", "SSH_MSG_34"),
        (32, "rsa", "SSH_MSG_KEXRSA_DONE"),
        (31, "gss", "SSH_MSG_31"),
        (99, None, "SSH_MSG_99"),
    ],
)
def test_message_names(number: int, family: str | None, name: str) -> None:
    assert message_name(number, family) == name


def test_msg_values() -> None:
    assert [Msg(n).name for n in (1, 2, 20, 21)] == ["DISCONNECT", "IGNORE", "KEXINIT", "NEWKEYS"]
