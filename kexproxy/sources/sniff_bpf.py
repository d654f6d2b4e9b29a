"""The kernel filter of `kexproxy sniff`: the user's --bpf, behind a prefix that keeps bulk
traffic out of Python without ever costing a handshake packet.

Theory of operation (why not a plain size threshold): the kernel cannot know which
connections are past SSH_MSG_NEWKEYS, and handshake segments are not reliably small: an
OpenSSH KEXINIT with post-quantum names is some 1.5 KB, an ML-KEM reply with an RSA host key
or a certificate several KB, a TLS server's certificate flight tens of KB, and on loopback
(or behind GRO) one segment carries a whole flight. Any fixed size limit would lose some of
them. So the prefix drops segments only of connections the flow table already counts and
no longer inspects (both directions past reassembly): user space names them, and the
filter is rebuilt and re-attached when that set changes (`BulkFilter.update`). Of those
connections it drops the large segments and the pure ACKs (no payload), the frames a bulk
transfer is made of; one in `ACK_SAMPLE` of the ACKs still passes (the kernel's random
number decides), and so does every small segment with data, so an interactive session's
times stay current. SYN, FIN and RST always pass, so the flow table still sees a bulk
connection's end, and a filtered segment shows as a jump in sequence numbers, which a
sniffing flow table counts as bytes sent (`FlowTable.count_jumps`). Every other frame goes
to the user's program, unchanged except that its accept length becomes `SNAPLEN` (libpcap
compiles with scapy's 65,535, which cuts loopback's 64 KiB frames). Loopback's outgoing
copies are not dropped in the kernel (only ignored in Python): in one measurement dropping
them moved the incoming copies' times by a few microseconds against tcpdump's; the two
sockets are stamped one after the other anyway (0.4 to 1.6 microseconds apart on an idle
machine), so a sniffed record's times match `read` of a tcpdump capture to microseconds, not
exactly. A bulk connection's large segments and ACKs are dropped in both copies.

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

from kexproxy.sources.capfile import SNAPLEN

#: IP total length (headers included) above which a segment of a bulk connection is dropped
#: in the kernel. Interactive traffic and ACKs stay below it and keep the flow's timestamps
#: current; bulk segments (1,448 bytes on Ethernet, up to 64 KiB on loopback) are above it.
BULK_SEGMENT_BYTES: Final = 1024
#: One in this many pure ACKs of a bulk connection still reaches Python (the kernel's random
#: number decides): enough to keep its last-seen time current at any rate, while the rest,
#: about one frame per two full-sized segments, stay in the kernel.
ACK_SAMPLE: Final = 64
#: Connections whose large segments the kernel drops at once: 14 instructions each (7 per
#: direction), within the kernel's 4,096 (BPF_MAXINSNS) beside a user filter of common size.
MAX_BULK_FLOWS: Final = 200
BPF_MAXINSNS: Final = 4096

# linux/filter.h, linux/bpf_common.h
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_W_IND, _LD_B_IND = 0x40, 0x50
_LDX_MSH, _LDX_MEM = 0xB1, 0x61
_LD_MEM, _ST = 0x60, 0x02
_ALU_AND_K, _ALU_RSH_K, _ALU_ADD_X, _ALU_SUB_X = 0x54, 0x74, 0x0C, 0x1C
#: SKF_AD_OFF + SKF_AD_RANDOM (linux/filter.h): a load there gives a random 32-bit number.
_SKF_AD_RANDOM: Final = 0xFFFFF000 + 56
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
    """Instructions that drop a frame (return 0) when it is a segment of one of `keys`
    (12-byte IPv4 flow keys: source, destination, ports) that carries neither SYN, FIN nor
    RST and is either large or a pure ACK (no payload; `ACK_SAMPLE` of those still pass),
    and otherwise fall through to whatever follows."""
    keys = [k for k in keys if len(k) == 12][: 2 * MAX_BULK_FLOWS]
    if not keys:
        return []
    asm = _Assembler()
    asm.emit(_LD_H_ABS, 12)
    asm.jump(_JEQ_K, 0x0800, false="exit")  # IPv4
    asm.emit(_LD_B_ABS, 23)
    asm.jump(_JEQ_K, 6, false="exit")  # TCP
    asm.emit(_LD_H_ABS, 20)
    asm.jump(_JSET_K, 0x1FFF, true="exit")  # a fragment
    asm.emit(_LDX_MSH, 14)  # X = IP header length
    asm.emit(_LD_B_IND, 27)
    asm.jump(_JSET_K, 0x07, true="exit")  # SYN, FIN or RST
    asm.emit(_LD_H_ABS, 16)
    asm.jump(_JGT_K, BULK_SEGMENT_BYTES, true="match")  # large
    asm.emit(_LD_B_IND, 26)  # TCP data offset, in the high nibble
    asm.emit(_ALU_AND_K, 0xF0)
    asm.emit(_ALU_RSH_K, 2)
    asm.emit(_ALU_ADD_X)  # IP plus TCP header length
    asm.emit(_ST, 3)
    asm.emit(_LDX_MEM, 3)
    asm.emit(_LD_H_ABS, 16)
    asm.emit(_ALU_SUB_X)  # payload length
    asm.jump(_JEQ_K, 0, false="exit")  # small data: interactive traffic, kept
    asm.emit(_LD_W_ABS, _SKF_AD_RANDOM)
    asm.emit(_ALU_AND_K, ACK_SAMPLE - 1)
    asm.jump(_JEQ_K, 0, true="exit", false="match")  # the sampled pure ACK passes
    asm.label("exit")  # conditional jumps reach 255 instructions; this one reaches any
    asm.always("pass")
    asm.label("match")
    asm.emit(_LDX_MSH, 14)
    asm.emit(_LD_W_ABS, 26)
    asm.emit(_ST, 0)
    asm.emit(_LD_W_ABS, 30)
    asm.emit(_ST, 1)
    asm.emit(_LD_W_IND, 14)
    asm.emit(_ST, 2)
    for i, key in enumerate(keys):
        src, dst, ports = struct.unpack("!III", key)
        asm.emit(_LD_MEM, 0)
        asm.jump(_JEQ_K, src, false=f"next{i}")
        asm.emit(_LD_MEM, 1)
        asm.jump(_JEQ_K, dst, false=f"next{i}")
        asm.emit(_LD_MEM, 2)
        asm.jump(_JEQ_K, ports, false=f"next{i}")
        asm.emit(_RET_K, 0)
        asm.label(f"next{i}")
    asm.label("pass")
    return asm.program()


class _Assembler:
    """Classic BPF with named forward labels: a conditional jump's targets are offsets
    from the next instruction, counted when the program is done."""

    def __init__(self) -> None:
        self._insns: list[tuple[int, str | None, str | None, int]] = []
        self._labels: dict[str, int] = {}

    def emit(self, code: int, k: int = 0) -> None:
        self._insns.append((code, None, None, k))

    def jump(self, code: int, k: int, *, true: str | None = None, false: str | None = None) -> None:
        self._insns.append((code, true, false, k))

    def always(self, target: str) -> None:
        self._insns.append((_JA, None, target, 0))

    def label(self, name: str) -> None:
        self._labels[name] = len(self._insns)

    def program(self) -> list[Insn]:
        out: list[Insn] = []
        for at, (code, true, false, k) in enumerate(self._insns):
            if code == _JA:
                assert false is not None
                out.append((_JA, 0, 0, self._labels[false] - at - 1))
                continue
            jt = 0 if true is None else self._labels[true] - at - 1
            jf = 0 if false is None else self._labels[false] - at - 1
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise FilterError("a bulk filter jump is out of range")
            out.append((code, jt, jf, k))
        return out


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
