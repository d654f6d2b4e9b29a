"""Several proxies, one PostgreSQL: real sshd behind, real ssh clients, a database restarted.

Two `kexproxy proxy` processes relay OpenSSH clients to one sshd and write into one
database at once (with a password in the URL, which must never be printed); `kexproxy
sessions --store URL` then lists what both wrote. A `pg_ctl restart -m fast` while
handshakes go on cuts the proxy's connection: every record still reaches the database, or
the proxy counts and says the ones that did not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.commands.test_proxy_cmd import ProxyProcess
from tests.peers import Sshd, run_ssh
from tests.peers.postgres import PASSWORD, PASSWORD_ROLE

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]
#: A KEX sshd never offers: the handshake fails fast, with a real "Unable to negotiate".
OLD_KEX = "-oKexAlgorithms=diffie-hellman-group1-sha1"


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@")


def proxy_to(sshd: Sshd, url: str, cwd: Path) -> ProxyProcess:
    cwd.mkdir(exist_ok=True)
    proxy = ProxyProcess("--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{sshd.port}",
                         "--store", url, "--json", cwd=cwd)  # fmt: skip
    proxy.wait_ready()
    return proxy


def json_ids(out: str) -> set[str]:
    return {json.loads(line)["id"] for line in out.splitlines() if line.strip()}


def sessions(url: str, cwd: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "kexproxy", "sessions", "--store", url, "--json", "--limit", "0"],
        capture_output=True, text=True, cwd=cwd, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_two_proxies_write_one_database_and_sessions_lists_both(
    postgres_url: str, tmp_path: Path
) -> None:
    url = with_password(postgres_url)
    with Sshd() as sshd:
        proxies = [proxy_to(sshd, url, tmp_path / f"p{n}") for n in (1, 2)]
        results: list[Any] = []

        def clients(port: int) -> None:
            for i in range(4):
                opts = (OLD_KEX,) if i % 2 else ()
                results.append(run_ssh(port, *opts))

        threads = [threading.Thread(target=clients, args=(p.port,)) for p in proxies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stopped = [p.stop(signal.SIGTERM) for p in proxies]
    assert sum(r.returncode == 0 for r in results) == 4, [r.stderr for r in results]
    assert sum("no matching key exchange method" in r.stderr for r in results) == 4
    per_proxy = []
    for proxy, (status, out) in zip(proxies, stopped, strict=True):
        assert status == 0, proxy.stderr
        assert PASSWORD not in proxy.stderr
        assert (
            f"{PASSWORD_ROLE}:***@" in proxy.stderr and "records in postgresql://" in proxy.stderr
        )
        per_proxy.append(json_ids(out))
    assert [len(ids) for ids in per_proxy] == [4, 4]
    listed = sessions(url, tmp_path)
    assert {r["id"] for r in listed} == per_proxy[0] | per_proxy[1]
    assert sorted(r["outcome"] for r in listed).count("failed") == 4


def test_a_database_restart_mid_traffic_loses_no_record_unsaid(
    postgres_cluster: Any, postgres_url: str, tmp_path: Path
) -> None:
    url = with_password(postgres_url)
    stop = threading.Event()
    results: list[Any] = []
    with Sshd() as sshd:
        proxy = proxy_to(sshd, url, tmp_path / "p")

        def traffic() -> None:
            while not stop.is_set():
                results.append(run_ssh(proxy.port, OLD_KEX))

        thread = threading.Thread(target=traffic)
        thread.start()
        time.sleep(1.5)
        # The proxy's store connection made and used before the cut: on a loaded machine its
        # first write once came after the restart, on a new connection, and nothing was cut.
        deadline = time.monotonic() + 30
        while not sessions(url, tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        before = len(results)
        postgres_cluster.restart()
        time.sleep(2.0)
        stop.set()
        thread.join()
        status, out = proxy.stop(signal.SIGTERM)
    assert status == 0, proxy.stderr
    assert before >= 1 and len(results) > before  # handshakes on both sides of the restart
    said = proxy.stderr
    assert PASSWORD not in said
    made = json_ids(out)
    assert len(made) == len(results)
    stored = {r["id"] for r in sessions(url, tmp_path)}
    # The cut was noticed and said once, and the store written again afterwards.
    assert said.count("cannot write the session store") == 1, said
    assert "writing the session store again" in said
    assert stored <= made  # nothing in the store that the proxy did not record
    unsaid = made - stored
    if unsaid:
        assert f"{len(unsaid)} record" in said and "could not be stored" in said, said
    else:
        assert "records in postgresql://" in said
