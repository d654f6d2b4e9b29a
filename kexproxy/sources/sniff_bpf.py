"""The kernel filter of `kexproxy sniff`: the user's --bpf, behind a prefix that keeps bulk
traffic out of Python without ever costing a handshake packet.

Theory of operation (why not a plain size threshold): the kernel cannot know which
connections are past SSH_MSG_NEWKEYS, and handshake segments are not reliably small: an
OpenSSH KEXINIT with post-quantum names is some 1.5 KB, an ML-KEM reply with an RSA host key
or a certificate several KB, a TLS server's certificate flight tens of KB, and on loopback
(or behind GRO) one segment carries a whole flight. Any fixed size limit would lose some of
them. So the prefix drops large segments only of connections the flow table already counts
and no longer inspects (both directions past reassembly): user space names them, and the
filter is rebuilt and re-attached when that set changes (`BulkFilter.update`). Every other
frame goes to the user's program, unchanged except that its accept length becomes
`SNAPLEN` (libpcap compiles with scapy's 65,535, which cuts loopback's 64 KiB frames). SYN,
FIN, RST and segments of at most `BULK_SEGMENT_BYTES` always pass, so the flow table still
sees a bulk connection's end, and a filtered segment shows as a jump in sequence numbers,
which a sniffing flow table counts as bytes sent (`FlowTable.count_jumps`). Loopback's
outgoing copies are not dropped in the kernel (only ignored in Python): measured, a tap
that accepts the outgoing copy is what gives the incoming one the time tcpdump records
(without it, times move by a few microseconds and records stop matching `read` of a
tcpdump capture); a bulk connection's large segments are dropped in both copies anyway.

Classic BPF limits what this covers: Ethernet-framed (and Linux loopback) IPv4 TCP only, at
most `MAX_BULK_FLOWS` connections at once; IPv6, raw-IP links and connections beyond the
limit pass whole and are counted in Python, as before.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable
from typing import Any, Final

#: IP total length (headers included) above which a segment of a bulk connection is dropped
#: in the kernel. Interactive traffic and ACKs stay below it and keep the flow's timestamps
#: current; bulk segments (1,448 bytes on Ethernet, up to 64 KiB on loopback) are above it.
BULK_SEGMENT_BYTES: Final = 1024
#: Connections whose large segments the kernel drops at once: 14 instructions each (7 per
#: direction), within the kernel's 4,096 (BPF_MAXINSNS) beside a user filter of common size.
MAX_BULK_FLOWS: Final = 200
#: Bytes of a frame accepted: libpcap's largest snap length (loopback frames are 65,550).
SNAPLEN: Final = 262_144
BPF_MAXINSNS: Final = 4096

# linux/filter.h, linux/bpf_common.h
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_W_IND = 0x40
_LDX_MSH = 0xB1
_LD_MEM, _ST = 0x60, 0x02
_JA, _JEQ_K, _JGT_K, _JSET_K = 0x05, 0x15, 0x25, 0x45
_RET_K = 0x06
_SO_ATTACH_FILTER: Final = 26
_DLT_EN10MB: Final = 1

Insn = tuple[int, int, int, int]  # code, jt, jf, k (struct sock_filter)


class FilterError(Exception):
    """The user's filter does not compile; the message says why in one line."""


def compile_user_filter(expression: str | None) -> list[Insn]:
    """libpcap's program for `expression` on Ethernet frames (Linux loopback frames carry an
    Ethernet header too), accepting `SNAPLEN` bytes; accept-all when there is none."""
    if not expression:
        return [(_RET_K, 0, 0, SNAPLEN)]
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        prog = compile_filter(expression, linktype=_DLT_EN10MB)
    except (Scapy_Exception, ImportError, OSError) as exc:
        raise FilterError(str(exc)) from None
    insns = prog.bf_insns
    out: list[Insn] = []
    for i in range(prog.bf_len):
        x = insns[i]
        code, k = int(x.code), int(x.k)
        out.append((code, int(x.jt), int(x.jf), SNAPLEN if code == _RET_K and k else k))
    return out


def bulk_prefix(keys: Iterable[bytes]) -> list[Insn]:
    """Instructions that drop a frame (return 0) when it is a large segment, neither SYN,
    FIN nor RST, of one of `keys` (12-byte IPv4 flow keys: source, destination, ports),
    and otherwise fall through to whatever follows."""
    prog: list[Insn] = []
    keys = [k for k in keys if len(k) == 12][: 2 * MAX_BULK_FLOWS]
    if not keys:
        return prog
    # Each check that fails jumps to `ja` over the flow blocks, which ends the prefix.
    checks = [
        (_LD_H_ABS, 12, _JEQ_K, 0x0800),  # IPv4
        (_LD_B_ABS, 23, _JEQ_K, 6),  # TCP
        (_LD_H_ABS, 20, _JSET_K, 0x1FFF),  # a fragment (fails when set)
        (_LD_H_ABS, 16, _JGT_K, BULK_SEGMENT_BYTES),  # large
    ]
    head = [(load, offset, jump, value, jump == _JSET_K) for load, offset, jump, value in checks]
    # After the checks: X = IP header length, then the flags byte, then M[0..2].
    after = [
        (_LDX_MSH, 0, 0, 14),
        (0x50, 0, 0, 27),  # BPF_LD|BPF_B|BPF_IND: TCP flags
        (_JSET_K, 0, 0, 0x07),  # SYN|FIN|RST: placeholder jumps fixed below
        (_LD_W_ABS, 0, 0, 26),
        (_ST, 0, 0, 0),
        (_LD_W_ABS, 0, 0, 30),
        (_ST, 0, 0, 1),
        (_LD_W_IND, 0, 0, 14),
        (_ST, 0, 0, 2),
        (_JA, 0, 0, 1),  # over the exit below
    ]
    # Layout: head (2 insns per check), after, exit (ja to the end), then 7 insns per key.
    blocks = 7 * len(keys)
    exit_at = len(head) * 2 + len(after)
    for i, (load, offset, jump, value, when_set) in enumerate(head):
        here = i * 2 + 1
        to_exit = exit_at - here - 1
        jt, jf = (to_exit, 0) if when_set else (0, to_exit)
        prog += [(load, 0, 0, offset), (jump, jt, jf, value)]
    for j, insn in enumerate(after):
        here = len(head) * 2 + j
        prog.append((_JSET_K, exit_at - here - 1, 0, 0x07) if insn[0] == _JSET_K else insn)
    prog.append((_JA, 0, 0, blocks))
    for key in keys:
        src, dst, ports = struct.unpack("!III", key)
        prog += [
            (_LD_MEM, 0, 0, 0),
            (_JEQ_K, 0, 5, src),
            (_LD_MEM, 0, 0, 1),
            (_JEQ_K, 0, 3, dst),
            (_LD_MEM, 0, 0, 2),
            (_JEQ_K, 0, 1, ports),
            (_RET_K, 0, 0, 0),
        ]
    return prog


def attach(sock: socket.socket, program: list[Insn]) -> None:
    """SO_ATTACH_FILTER: the kernel copies the program, so the buffer lives only for the call."""
    if not 0 < len(program) <= BPF_MAXINSNS:
        raise FilterError(f"a filter of {len(program)} instructions cannot be attached")
    buf = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


class BulkFilter:
    """The socket's filter: the user's program behind a prefix naming the bulk connections."""

    def __init__(self, sock: socket.socket, user: list[Insn]) -> None:
        self._sock = sock
        self._user = user
        self._keys: frozenset[bytes] = frozenset()
        self.attaches = 0

    def program(self) -> list[Insn]:
        room = (BPF_MAXINSNS - len(self._user) - 32) // 7
        keys = sorted(self._keys)[: max(0, room)]
        return bulk_prefix(keys) + self._user

    def update(self, keys: Iterable[bytes]) -> bool:
        """Re-attaches when the set of bulk connections changed; True when it did."""
        wanted = frozenset(k for k in keys if len(k) == 12)
        if wanted == self._keys and self.attaches:
            return False
        self._keys = wanted
        attach(self._sock, self.program())
        self.attaches += 1
        return True


def drain(sock: Any) -> None:
    """Discards frames queued before the real filter was attached: they were not filtered."""
    while True:
        try:
            sock.recv(SNAPLEN, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
