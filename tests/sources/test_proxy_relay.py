"""One direction of the relay on a real event loop and real sockets: forward first, observe
second, FIN passed on as FIN, and the copy and splice paths give the same bytes."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from kexproxy.core.observer import Leg
from kexproxy.sources.proxy_relay import Pump


class Owner:
    """What a pump reports to (the session's side of the interface)."""

    def __init__(self, inspect_for: int) -> None:
        self.inspect_for = inspect_for
        self.observed = bytearray()
        self.counted_bytes = 0
        self.eof: list[Leg] = []
        self.finished = asyncio.Event()
        self.resets: list[Leg] = []

    @property
    def inspecting(self) -> bool:
        return len(self.observed) < self.inspect_for

    def observe(self, side: Leg, data: bytes, ts: float) -> None:
        self.observed += data

    def counted(self, side: Leg, nbytes: int, ts: float) -> None:
        self.counted_bytes += nbytes

    def end_of_stream(self, side: Leg, ts: float) -> None:
        self.eof.append(side)

    def pump_finished(self, pump: Pump) -> None:
        self.finished.set()

    def reset_by(self, side: Leg, ts: float, exc: OSError) -> None:
        self.resets.append(side)
        self.finished.set()


@pytest.mark.parametrize("splice", [True, False])
def test_bytes_arrive_unchanged_the_handshake_is_observed_and_fin_is_passed_on(
    splice: bool,
) -> None:
    payload = os.urandom(3 * 1024 * 1024)

    async def run() -> tuple[bytes, Owner]:
        loop = asyncio.get_running_loop()
        client, proxy_in = socket.socketpair()
        proxy_out, server = socket.socketpair()
        for sock in (proxy_in, proxy_out, server):
            sock.setblocking(False)
        owner = Owner(inspect_for=4096)
        pump = Pump(loop, proxy_in, proxy_out, "a", owner, clock=loop.time, use_splice=splice)
        pump.start()
        sender = loop.run_in_executor(
            None, lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR))
        )
        received = bytearray()
        while chunk := await loop.sock_recv(server, 1 << 20):
            received += chunk
        await sender
        await asyncio.wait_for(owner.finished.wait(), 10)
        pump.stop()
        for sock in (client, proxy_in, proxy_out, server):
            sock.close()
        return bytes(received), owner

    received, owner = asyncio.run(run())
    assert received == payload
    assert owner.eof == ["a"] and owner.resets == []
    # The start was shown to the tracker; the rest went by uncounted or counted, never lost.
    assert payload.startswith(bytes(owner.observed)) and len(owner.observed) >= 4096
    assert len(owner.observed) + owner.counted_bytes == len(payload)


def test_a_reset_destination_is_reported_as_the_other_side() -> None:
    async def run() -> Owner:
        loop = asyncio.get_running_loop()
        client, proxy_in = socket.socketpair()
        proxy_out, server = socket.socketpair()
        for sock in (proxy_in, proxy_out):
            sock.setblocking(False)
        owner = Owner(inspect_for=1 << 30)
        pump = Pump(loop, proxy_in, proxy_out, "a", owner, clock=loop.time)
        pump.start()
        server.close()  # the destination is gone: sending there fails
        await loop.run_in_executor(None, client.sendall, b"x" * 100_000)
        await asyncio.wait_for(owner.finished.wait(), 10)
        pump.stop()
        for sock in (client, proxy_in, proxy_out):
            sock.close()
        return owner

    owner = asyncio.run(run())
    assert owner.resets and set(owner.resets) == {"b"}  # the session stops the pump at the first
