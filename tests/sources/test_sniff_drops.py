"""The live source's kernel-drop bookkeeping: every record of a session open while frames were dropped says so."""

from __future__ import annotations

from kexproxy.sources.sniff import DropLedger, drop_note


def test_a_session_open_while_frames_were_dropped_counts_them() -> None:
    readings = iter([0, 3, 0, 2])
    ledger = DropLedger()
    ledger.attach(lambda: next(readings))
    assert ledger.poll(10.0) == 0
    assert ledger.poll(11.0) == 3  # dropped in (10, 11]
    assert ledger.since(10.5, 12.0) == 3  # started after the reading before the drops
    assert ledger.since(11.5, 13.0) == 2  # only what was dropped after its first frame


def test_a_session_after_the_drops_gets_no_note() -> None:
    readings = iter([4, 0])
    ledger = DropLedger()
    ledger.attach(lambda: next(readings))
    ledger.poll(5.0)
    assert ledger.since(6.0, 7.0) == 0
    assert ledger.total == 4


def test_the_note_says_how_many_and_what_it_means() -> None:
    assert drop_note(1) == (
        "the kernel dropped 1 frame while this session was open: its record may miss packets"
    )
    assert "dropped 5 frames" in drop_note(5)
