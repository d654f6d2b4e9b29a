"""SSH servers written with paramiko and AsyncSSH, each in its own process on 127.0.0.1.

A test that checks what a library's server offers, or that a recipe's server step works, runs
the library's own server code with the step pasted in as a user would: ``setting`` is Python
text, either keyword arguments for ``paramiko.Transport(sock, ...)`` /
``asyncssh.create_server(...)`` or, for paramiko, whole statements that bind ``transport``.
The servers authenticate nobody; a client's key exchange is all they are for.
"""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.peers.base import PeerError, kill_tree, python_module_or_skip

#: Seconds a server process may take to import its library and listen.
START_TIMEOUT = 30.0

_PARAMIKO_SERVER = r"""
import socket, sys, threading
import paramiko
port, setting, keyfiles = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
keys = [paramiko.PKey.from_path(path) for path in keyfiles]

def serve(sock):
    scope = {"paramiko": paramiko, "sock": sock}
    if setting.lstrip().startswith("transport ="):
        exec(setting, scope)
    else:
        exec("transport = paramiko.Transport(sock, " + setting + ")", scope)
    transport = scope["transport"]
    for key in keys:
        transport.add_server_key(key)
    try:
        transport.start_server(server=paramiko.ServerInterface())
        transport.join(15)
    except Exception:
        pass
    transport.close()

listener = socket.create_server(("127.0.0.1", port))
print("ready", listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

_ASYNCSSH_SERVER = r"""
import asyncio, sys
import asyncssh
port, setting, keyfiles = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

async def main():
    scope = {"asyncssh": asyncssh, "port": port, "keyfiles": keyfiles}
    exec(
        "server = asyncssh.create_server(asyncssh.SSHServer, '127.0.0.1', port, "
        "server_host_keys=keyfiles, " + setting + ")",
        scope,
    )
    server = await scope["server"]
    print("ready", server.get_port(), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextmanager
def _python_server(module: str, script: str, setting: str, keys: Sequence[Path]) -> Iterator[int]:
    """Run ``script`` with ``setting`` pasted in until the block ends; yield its port."""
    python_module_or_skip(module)
    # Port 0: the server takes a port the kernel picks and says which. A port found free
    # beforehand can be taken by another worker before the server binds it (CI, once:
    # EADDRINUSE for paramiko).
    argv = [sys.executable, "-c", script, "0", setting, *(str(k) for k in keys)]
    proc: subprocess.Popen[Any] = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        word, _, port_text = (proc.stdout.readline().strip() if ready else b"").partition(b" ")
        if word != b"ready" or not port_text.isdigit():
            kill_tree(proc, grace=1.0)
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
            raise PeerError(f"{module} server did not start (setting {setting!r}):\n{err}")
        yield int(port_text)
    finally:
        kill_tree(proc)


@contextmanager
def paramiko_server(keys: Sequence[Path], setting: str = "") -> Iterator[int]:
    """A paramiko server with host ``keys`` and ``setting`` (Transport keyword arguments or statements)."""
    with _python_server("paramiko", _PARAMIKO_SERVER, setting, keys) as port:
        yield port


@contextmanager
def asyncssh_server(keys: Sequence[Path], setting: str = "") -> Iterator[int]:
    """An AsyncSSH server with host ``keys`` and ``setting`` (create_server keyword arguments)."""
    with _python_server("asyncssh", _ASYNCSSH_SERVER, setting, keys) as port:
        yield port
