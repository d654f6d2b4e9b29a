"""SSH message numbers and disconnect reasons as enums, with their RFC sections."""

from __future__ import annotations

from enum import IntEnum


class Msg(IntEnum):
    """Transport-layer message numbers, RFC 4250 section 4.1.2 and RFC 8308 (EXT_INFO)."""

    DISCONNECT = 1
    IGNORE = 2
    UNIMPLEMENTED = 3
    DEBUG = 4
    SERVICE_REQUEST = 5
    SERVICE_ACCEPT = 6
    EXT_INFO = 7
    KEXINIT = 20
    NEWKEYS = 21


#: RFC 4253 section 7: 30 to 49 are specific to the key exchange method.
KEX_METHOD_FIRST = 30
KEX_METHOD_LAST = 49


class DisconnectReason(IntEnum):
    """SSH_MSG_DISCONNECT reason codes, RFC 4250 section 4.2.2."""

    HOST_NOT_ALLOWED_TO_CONNECT = 1
    PROTOCOL_ERROR = 2
    KEY_EXCHANGE_FAILED = 3
    RESERVED = 4
    MAC_ERROR = 5
    COMPRESSION_ERROR = 6
    SERVICE_NOT_AVAILABLE = 7
    PROTOCOL_VERSION_NOT_SUPPORTED = 8
    HOST_KEY_NOT_VERIFIABLE = 9
    CONNECTION_LOST = 10
    BY_APPLICATION = 11
    TOO_MANY_CONNECTIONS = 12
    AUTH_CANCELLED_BY_USER = 13
    NO_MORE_AUTH_METHODS_AVAILABLE = 14
    ILLEGAL_USER_NAME = 15


def disconnect_reason_name(code: int) -> str:
    """``SSH_DISCONNECT_PROTOCOL_ERROR`` for 2; unknown codes are named by number."""
    try:
        return f"SSH_DISCONNECT_{DisconnectReason(code).name}"
    except ValueError:
        return f"SSH_DISCONNECT_UNKNOWN_{code}"


#: Names of the key exchange method messages by family (RFC 4253 8, RFC 4419, RFC 5656,
#: RFC 4432), for timelines; the number alone is ambiguous across families.
KEX_MESSAGE_NAMES: dict[str, dict[int, str]] = {
    "dh": {30: "SSH_MSG_KEXDH_INIT", 31: "SSH_MSG_KEXDH_REPLY"},
    "ecdh": {30: "SSH_MSG_KEX_ECDH_INIT", 31: "SSH_MSG_KEX_ECDH_REPLY"},
    "gex": {
        30: "SSH_MSG_KEX_DH_GEX_REQUEST_OLD",
        31: "SSH_MSG_KEX_DH_GEX_GROUP",
        32: "SSH_MSG_KEX_DH_GEX_INIT",
        33: "SSH_MSG_KEX_DH_GEX_REPLY",
        34: "SSH_MSG_KEX_DH_GEX_REQUEST",
    },
    "rsa": {30: "SSH_MSG_KEXRSA_PUBKEY", 31: "SSH_MSG_KEXRSA_SECRET", 32: "SSH_MSG_KEXRSA_DONE"},
}

MESSAGE_NAMES: dict[int, str] = {m.value: f"SSH_MSG_{m.name}" for m in Msg}


def message_name(number: int, kex_family: str | None = None) -> str:
    """The RFC name of a message number, using the KEX family for 30 to 49."""
    if number in MESSAGE_NAMES:
        return MESSAGE_NAMES[number]
    if kex_family is not None and number in KEX_MESSAGE_NAMES.get(kex_family, {}):
        return KEX_MESSAGE_NAMES[kex_family][number]
    return f"SSH_MSG_{number}"
