"""Named limits and protocol facts, each with its source, so a reviewer can check one place.

Bounds protect the parser from strangers: every buffer the core keeps is capped by one of
these, and exceeding one ends inspection of the direction with a precise reason.
"""

from __future__ import annotations

#: RFC 4253 section 4.2: the identification line is at most 255 bytes including CR LF.
RFC_MAX_IDENTIFICATION = 255
#: OpenSSH reads identification lines of up to 8 KiB (kex.c kex_exchange_identification)
#: and only then gives up; a longer line is an anomaly, not yet a failure, up to this.
MAX_LINE = 8 * 1024
#: OpenSSH's SSH_MAX_PRE_BANNER_LINES (kex.h): lines a server may send before "SSH-".
MAX_PRE_BANNER_LINES = 1024
#: Pre-banner lines kept verbatim in the record; the rest are only counted.
KEPT_PRE_BANNER_LINES = 64
#: OpenSSH's PACKET_MAX_SIZE (packet.c): 256 KiB for a whole binary packet.
MAX_PACKET_LENGTH = 256 * 1024
#: RFC 4253 section 6: packet_length + padding_length + payload is a multiple of the
#: cipher block size, 8 for the "none" cipher used before the first NEWKEYS.
CLEAR_BLOCK_SIZE = 8
#: RFC 4253 section 6: at least four bytes of random padding.
MIN_PADDING = 4
#: OpenSSH's match_list (match.c, MAX_PROP) reads only this many entries of the server's list.
OPENSSH_MAX_PROPOSAL_ENTRIES = 40
#: Notes and timeline entries kept per session: a hostile peer cannot grow a record past this.
MAX_NOTES = 64
#: Names of one name-list a record keeps: OpenSSH's longest default list has 28; a 256 KiB
#: KEXINIT can hold 50,000, which as Python strings would cost megabytes a session.
KEPT_NAMES = 1024
#: Bytes of one KEX method message (30 to 34) kept for decoding; real ones are a few KiB,
#: the host key comes first, and a peer could send eight of 256 KiB each.
KEPT_KEX_BYTES = 32 * 1024
#: Characters of a HASSH input string a record keeps; the fingerprint is of the whole string.
#: 20,000-name offers (legal under MAX_PACKET_LENGTH) made 290 KB records otherwise.
KEPT_HASSH_CHARS = 32 * 1024
MAX_TIMELINE = 128
#: Plaintext messages (DISCONNECT, DEBUG) whose text is kept; descriptions are cut at this.
MAX_TEXT = 1024
#: Disconnects kept per session (a peer can send only one that matters, but may send many).
MAX_DISCONNECTS = 8
#: Plaintext lines (refusals sent where packets belong) kept per side; the first is the one
#: that matters, and a peer may send millions.
MAX_PLAINTEXT_LINES = 8

# -- TLS ------------------------------------------------------------------------------------
#: RFC 8446 section 5.1 (and RFC 5246 6.2.1): a plaintext record fragment is at most 2^14 bytes.
TLS_MAX_PLAINTEXT = 1 << 14
#: RFC 5246 section 6.2.3: a TLS 1.2 ciphertext record is at most 2^14 + 2048 bytes (RFC 8446
#: 5.2 allows 2^14 + 256 in TLS 1.3); a longer record header means "not TLS" or hostile.
TLS_MAX_RECORD = (1 << 14) + 2048
#: Bytes of one handshake message: OpenSSL's SSL_MAX_CERT_LIST_DEFAULT (100 KiB, ssl.h) bounds
#: the largest one it accepts, a Certificate chain, plus its 4-byte header; the 24-bit length
#: field would otherwise let a peer make the parser buffer 16 MiB.
TLS_MAX_HANDSHAKE_MESSAGE = 100 * 1024 + 4
#: Entries of one list (cipher suites, groups, extensions, ALPN names...) a hello keeps: real
#: ones have under 200, a 64 KiB ClientHello can hold 32,000 suites.
TLS_KEPT_ENTRIES = 1024
#: Certificates of one Certificate message kept (DER); real chains have 2 to 4.
TLS_KEPT_CERTIFICATES = 16
