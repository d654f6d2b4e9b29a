"""ClientHello and ServerHello as the fingerprints read them (a stand-in: fields only).

The parser's branch owns this module and its decoding; this copy holds exactly the fields of
the shared design (/work/briefs/tls-spec.md) so fingerprints.py can be built and tested
against them at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHello:
    """A ClientHello's offer, lists in wire order with GREASE values kept."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[int, ...]
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    key_share_groups: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    alpn: tuple[str, ...]
    server_name: str | None
    sslv2: bool = False

    def to_dict(self) -> dict[str, object]:
        """The record's `client_hello` (built by the parser's branch)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHello:
    """A ServerHello's choice (a HelloRetryRequest too, with `retry`)."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[int, ...]
    selected_version: int | None
    key_share_group: int | None
    alpn: str | None
    retry: bool

    @property
    def version(self) -> int:
        """The version chosen: supported_versions' answer, else the legacy field."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    def to_dict(self) -> dict[str, object]:
        """The record's `server_hello` (built by the parser's branch)."""
        raise NotImplementedError
