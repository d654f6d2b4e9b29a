"""`kexproxy proxy --probe-failures` with real failing clients and real servers: the record names the true list, for certain.

For every scenario of scripts/tls_capture_scenarios.py that the SERVER refuses, the real
client connects through the real ``kexproxy proxy --probe-failures`` to the real server
(configured as the scenario says, but serving more than one connection, since the probes
connect too); the session's final record must name the scenario's list with certain: true.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_tls_captures import tls_recorder
from tests.peers.base import LOOPBACK, which_or_skip
from tests.peers.tls_peers import GnutlsServer, OpensslServer, Pki, TlsServer, make_pki

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]


class ManyOpensslServer(OpensslServer):
    """``s_server`` serving connection after connection: the client's, then the probes'."""

    def _command(self, port: int) -> list[str]:
        argv = super()._command(port)
        at = argv.index("-naccept")
        return argv[:at] + argv[at + 2 :]


def _server_refused() -> list[Any]:
    scenarios = tls_recorder().SCENARIOS
    return [s for s in scenarios if s.refused_by == "server" and s.outcome == "failed"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    which_or_skip("openssl")
    return make_pki(tmp_path_factory.mktemp("pki"))


class ProxyProcess:
    """``kexproxy proxy --probe-failures --json --no-store`` as a child process; its JSON lines read as they come."""

    def __init__(self, upstream: int) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tui'}"}
        argv = [sys.executable, "-m", "kexproxy", "proxy", "--listen", f"{LOOPBACK}:0"]
        argv += ["--upstream", f"{LOOPBACK}:{upstream}", "--no-store", "--json", "--probe-failures"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
        )
        self.port = self._listening()

    def _listening(self, timeout: float = 20.0) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        text = b""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            text += line
            found = re.search(rb"listening on [^\s]*:(\d+)", line)
            if found:
                return int(found.group(1))
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError(f"the proxy did not start: {text.decode(errors='replace')}")

    def record(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next final record (a JSON line on stdout)."""
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(timeout=deadline - time.monotonic()):
                line = self.proc.stdout.readline()
                if line:
                    loaded: dict[str, Any] = json.loads(line)
                    return loaded
        raise AssertionError("no record from the proxy in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def scenario_server(scenario: Any, pki: Pki) -> TlsServer:
    """The scenario's server as recorded, but serving more than one connection."""
    leaf = pki.leaf(scenario.leaf)
    options = tls_recorder().fill(scenario.server_options, pki, leaf)
    if scenario.server == "s_server":
        return ManyOpensslServer(leaf, *options, www=scenario.www)
    return GnutlsServer(leaf, *options)


@pytest.mark.parametrize("scenario", _server_refused(), ids=lambda s: s.name)
def test_probe_failures_names_the_true_list(scenario: Any, pki: Pki) -> None:
    with scenario_server(scenario, pki) as server:
        proxy = ProxyProcess(server.port)
        try:
            result = tls_recorder().run_client(scenario, proxy.port, pki)
            assert result.returncode != 0, "the scenario's client was meant to fail"
            record = proxy.record()
        finally:
            proxy.stop()
    assert record["protocol"] == "tls" and record["outcome"] == "failed"
    refused = record["rejections"]["server"]
    assert refused is not None, record["rejections"]
    assert refused["list"] == scenario.list, refused
    assert refused["certain"] is True, refused
    assert "got a ServerHello" in refused["reason"]
