"""The live capture as a feed: `kexproxy tui --interface IFACE`, the dashboard over `sniff`.

Theory of operation. As the proxy feed does with the relay, `SniffFeed.run` runs the
capture in the feed's thread (`sniff_records.SniffRecords`, the same code as
`kexproxy sniff`) and hands every record to a pipeline whose `MessageSink` posts it: the
decided record as soon as a handshake is decided (shown live), the final one when its
session ends. The capture checks the app's stop event between frames and every
`sniff.POLL_SECONDS` on a quiet link, so closing the dashboard ends it at once; sessions
still open are then recorded as they stand, as Ctrl-C does for `kexproxy sniff`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kexproxy.core.textsafe import printable
from kexproxy.pipeline import Pipeline, Stage
from kexproxy.pipeline import stages as default_stages
from kexproxy.sinks.base import Sink
from kexproxy_tui.feeds import MessageSink, Post
from kexproxy_tui.messages import FeedFinished, FeedProblem, FeedStatus


class SniffFeed:
    """Captures `interface` in a thread; records reach the app as messages, and the store
    too when one is given, as ``kexproxy sniff`` writes it."""

    def __init__(
        self,
        interface: str,
        *,
        bpf: str | None = None,
        store: str | None = None,
        stages: Sequence[Stage] | None = None,
    ) -> None:
        self.interface = interface
        self.bpf = bpf
        self.store = store
        self.stages = tuple(default_stages() if stages is None else stages)
        self.label = f"sniff {printable(interface)}"
        #: Set once the socket captures (or the capture failed to start).
        self.ready = threading.Event()
        #: Why the capture did not start, once it did not.
        self.problem: str | None = None

    def run(self, post: Post, stop: threading.Event) -> None:
        from kexproxy.core.diagnosis import preload
        from kexproxy.sources.sniff import SniffError
        from kexproxy.sources.sniff_records import SniffRecords

        preload()  # before the first session, not while its frames wait in the kernel

        def warn(text: str) -> None:
            post(FeedProblem(printable(text.removeprefix("kexproxy: "))))

        sinks: list[Sink] = [MessageSink(post)]
        if self.store is not None:
            from kexproxy.sinks.store import StoreSink

            sinks.append(StoreSink(self.store, warn=warn))
        pipeline = Pipeline(sinks, stages=self.stages)
        sniffed = SniffRecords(
            self.interface, lambda record, final: pipeline.publish(record, final=final), warn=warn
        )
        where = f"capturing on {printable(self.interface)}"
        if self.bpf:
            where += f" (filter {printable(self.bpf)!r})"

        def ready() -> None:
            self.ready.set()
            post(FeedStatus(where))

        try:
            result = sniffed.run(bpf=self.bpf, should_stop=stop.is_set, ready=ready)
        except SniffError as exc:
            self.problem = printable(str(exc))
            post(FeedProblem(self.problem))
            post(FeedFinished("not capturing"))
            return
        finally:
            self.ready.set()
            pipeline.close()
        drops = result.kernel_drops
        dropped = f", {drops} frames dropped by the kernel" if drops else ""
        post(FeedFinished(f"capture on {printable(self.interface)} stopped{dropped}"))
