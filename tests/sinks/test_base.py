"""Every sink speaks the one `Sink` protocol: `update(record, *, final)` and `close()`."""

from __future__ import annotations

import inspect

import pytest

from kexproxy.pipeline import CollectSink
from kexproxy.sinks.background import BackgroundSink
from kexproxy.sinks.base import Sink
from kexproxy.sinks.jsonl import JsonLinesSink
from kexproxy.sinks.store import StoreSink
from kexproxy.sinks.summary import SummarySink

SINKS = [JsonLinesSink, SummarySink, StoreSink, BackgroundSink, CollectSink]


@pytest.mark.parametrize("cls", SINKS, ids=lambda c: c.__name__)
def test_each_sink_has_the_protocols_methods_with_final_keyword_only(cls: type) -> None:
    update = inspect.signature(cls.update)
    assert list(update.parameters)[:2] == ["self", "record"]
    assert update.parameters["final"].kind is inspect.Parameter.KEYWORD_ONLY
    assert callable(cls.close)
    protocol = {n for n in dir(Sink) if not n.startswith("_")}
    assert protocol == {"update", "close"} and protocol <= set(dir(cls))
