"""The relay's bounded copy of a session's handshake bytes."""

from __future__ import annotations

import pickle

from kexproxy.core.observer import Endpoint
from kexproxy.sources.proxy_tape import TapeChunk, TapeClose, TapeRecorder

CLIENT, SERVER = Endpoint("127.0.0.1", 50000), Endpoint("127.0.0.1", 22)


def test_chunks_and_closes_are_kept_in_order() -> None:
    recorder = TapeRecorder(1.0)
    recorder.data("a", b"SSH-2.0-x\r\n", 1.1)
    recorder.data("b", b"SSH-2.0-y\r\n", 1.2)
    recorder.close("a", "fin", 1.3, 5000)
    tape = recorder.tape("s1", CLIENT, SERVER)
    assert tape.events == (
        TapeChunk("a", 1.1, b"SSH-2.0-x\r\n"),
        TapeChunk("b", 1.2, b"SSH-2.0-y\r\n"),
        TapeClose("a", 1.3, "fin", 5000),
    )
    assert (tape.session_id, tape.opened, tape.dropped) == ("s1", 1.0, 0)
    assert pickle.loads(pickle.dumps(tape)) == tape


def test_past_the_limit_nothing_more_is_kept_and_the_rest_is_counted() -> None:
    recorder = TapeRecorder(0.0, limit=10)
    recorder.data("a", b"12345678", 0.1)
    recorder.data("b", b"abc", 0.2)  # would pass the limit: cut here
    recorder.data("a", b"9", 0.3)  # fits, but a stream with a hole is worse than a cut one
    recorder.close("b", "rst", 0.4, 3)
    tape = recorder.tape("s2", CLIENT, SERVER)
    assert tape.events == (TapeChunk("a", 0.1, b"12345678"), TapeClose("b", 0.4, "rst", 3))
    assert tape.dropped == 4
