"""Dropbear 2022.83 built from Debian's source with a chosen localoptions.h, for build-time recipes.

A `dropbear_build` recipe step is ``#define`` lines for localoptions.h, and the only proof
that they work is a dropbear built with them. The source is the upstream tarball Debian 12
ships (``dropbear_2022.83.orig.tar.bz2``), fetched once into the user's cache directory by
scripts/setup (``python -m tests.peers.dropbear_build``) and checked twice: the ``.dsc``
against a pinned SHA-256, and the tarball against both the pin and the checksum the ``.dsc``
lists. Builds need what Debian's build does (a C compiler, make, and the headers of zlib,
libtomcrypt and libtommath), and a build is kept per localoptions.h text so a test session
builds each variant once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.peers.base import PeerError, run_command, skip_or_fail, which_or_skip

#: Debian's pool for the source package; Debian 12 ships 2022.83-1+deb12u3.
DEBIAN_POOL = "http://deb.debian.org/debian/pool/main/d/dropbear/"
DSC = "dropbear_2022.83-1+deb12u3.dsc"
DSC_SHA256 = "de21d1d56b6b4086918095e3f6d1b8276d22d4a890953d0f9f8d28aa946296c4"
TARBALL = "dropbear_2022.83.orig.tar.bz2"
TARBALL_SHA256 = "bc5a121ffbc94b5171ad5ebe01be42746d50aa797c9549a4639894a16749443b"
SOURCE_DIR = "dropbear-2022.83"
#: As Debian builds it, against the system's libtomcrypt and libtommath (its Build-Depends,
#: and several times faster than building the bundled copies), without login records, which
#: change nothing a KEXINIT carries. Syslog stays: without it dropbear has no -E (log to
#: stderr), which the Dropbear fixture passes.
CONFIGURE_ARGS = (
    "--disable-bundled-libtom",
    "--disable-lastlog",
    "--disable-utmp",
    "--disable-utmpx",
    "--disable-wtmp",
    "--disable-wtmpx",
    "--disable-loginfunc",
    "--disable-pututline",
    "--disable-pututxline",
)
#: Measured at 10 to 25 s (configure, then make) on two cores shared with other work.
BUILD_TIMEOUT = 900.0
FETCH_TIMEOUT = 120.0


def cache_dir() -> Path:
    """Where the source is kept between runs: ``$XDG_CACHE_HOME/kexproxy`` or ``~/.cache/kexproxy``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kexproxy"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(name: str, dest: Path) -> None:
    """Fetch one file of the pool into `dest`, through a partial file so no half file is kept."""
    partial = dest.with_name(dest.name + ".part")
    url = DEBIAN_POOL + name
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as answer, partial.open("wb") as out:
        shutil.copyfileobj(answer, out)
    partial.replace(dest)


def _checked(path: Path, expected: str) -> None:
    actual = _sha256(path)
    if actual != expected:
        path.unlink()
        raise PeerError(f"{path.name}: SHA-256 {actual}, expected {expected}; removed")


def dsc_sha256(dsc_text: str, name: str) -> str | None:
    """The SHA-256 the ``.dsc``'s Checksums-Sha256 field lists for file `name`."""
    field = re.search(r"^Checksums-Sha256:\n((?: .*\n)+)", dsc_text, re.MULTILINE)
    for line in field.group(1).splitlines() if field else ():
        digest, _size, file = line.split()
        if file == name:
            return digest
    return None


def fetch_source(cache: Path | None = None) -> Path:
    """The verified source tarball, downloaded into `cache` the first time; PeerError when it cannot be."""
    folder = cache if cache is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dsc, tarball = folder / DSC, folder / TARBALL
    try:
        if not dsc.is_file():
            _download(DSC, dsc)
        _checked(dsc, DSC_SHA256)
        listed = dsc_sha256(dsc.read_text(), TARBALL)
        if listed != TARBALL_SHA256:
            raise PeerError(f"{DSC} lists {listed} for {TARBALL}, the pin is {TARBALL_SHA256}")
        if not tarball.is_file():
            _download(TARBALL, tarball)
        _checked(tarball, TARBALL_SHA256)
    except OSError as exc:
        raise PeerError(f"cannot fetch {TARBALL} from {DEBIAN_POOL}: {exc}") from exc
    return tarball


def source_or_skip() -> Path:
    """fetch_source(), or skip the test (fail under KEXPROXY_REQUIRE_PEERS=1) when it cannot be had."""
    try:
        return fetch_source()
    except PeerError as exc:
        skip_or_fail(str(exc))


#: The headers the build needs, and the Debian package of each (the .dsc's Build-Depends).
HEADERS = {"zlib.h": "zlib1g-dev", "tomcrypt.h": "libtomcrypt-dev", "tommath.h": "libtommath-dev"}
#: Both programs come from one tree, which compiles the objects they share once.
PROGRAMS = ("dropbear", "dbclient")


@dataclass(frozen=True, slots=True)
class Build:
    """The server and client of one build, and how long making it took (0 when cached)."""

    folder: Path
    localoptions: str
    seconds: float

    @property
    def dropbear(self) -> Path:
        return self.folder / "dropbear"

    @property
    def dbclient(self) -> Path:
        return self.folder / "dbclient"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`, so parallel test workers build one variant once."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_dropbear(localoptions: str, root: Path) -> Build:
    """Dropbear's server and client built with `localoptions` as localoptions.h, kept under `root` per text.

    ``./configure`` then ``make -j2 dropbear dbclient`` in a fresh copy of the source:
    Dropbear reads localoptions.h at compile time, so every variant gets its own tree.
    """
    for tool in ("cc", "make"):
        which_or_skip(tool)
    for header, package in HEADERS.items():
        if not Path("/usr/include", header).is_file():
            skip_or_fail(f"{header} not installed (apt package {package})")
    tarball = source_or_skip()
    key = hashlib.sha256((localoptions + "\0" + " ".join(CONFIGURE_ARGS)).encode()).hexdigest()
    folder = root / key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / "lock"):
        if all((folder / program).is_file() for program in PROGRAMS):
            return Build(folder, localoptions, 0.0)
        start = time.monotonic()
        shutil.rmtree(folder / SOURCE_DIR, ignore_errors=True)
        with tarfile.open(tarball, "r:bz2") as archive:
            archive.extractall(folder, filter="data")
        tree = folder / SOURCE_DIR
        (tree / "localoptions.h").write_text(localoptions)
        for argv in (["./configure", *CONFIGURE_ARGS], ["make", "-j2", *PROGRAMS]):
            result = run_command(argv, timeout=BUILD_TIMEOUT, cwd=tree)
            if result.returncode != 0 or result.timed_out:
                tail = (result.stdout + result.stderr)[-4000:]
                raise PeerError(f"{' '.join(argv)} failed ({result.returncode}):\n{tail}")
        for program in PROGRAMS:
            shutil.copy2(tree / program, folder / program)
        shutil.rmtree(tree, ignore_errors=True)
        return Build(folder, localoptions, time.monotonic() - start)


def main() -> int:
    """Fetch and verify the source once (scripts/setup), printing where it is."""
    try:
        path = fetch_source()
    except PeerError as exc:
        print(f"dropbear source: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
