"""Where the local cluster's Kafka comes from: jars fetched with Maven, run by ``java``.

Kafka is not installed from a distribution archive: ``docker/kafka/pom.xml`` names it as a
Maven dependency, ``mvn dependency:copy-dependencies`` fetches it and everything it needs
from Maven Central once, and the jars are cached in ``.local/kafka/libs`` (shared by every
local cluster). ``bin/install`` calls ``ensure_jars()`` so that a first ``bin/up`` does not
download while starting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workers.localkafka import LocalClusterError
from workers.system import LOCAL_DIR, PROJECT_ROOT

KAFKA_DIR = LOCAL_DIR / "kafka"  # the jars (libs/) and one directory per cluster
LIBS_DIR = KAFKA_DIR / "libs"
KAFKA_RECIPE_DIR = PROJECT_ROOT / "docker" / "kafka"
POM = KAFKA_RECIPE_DIR / "pom.xml"
LOG4J2_CONFIG = KAFKA_RECIPE_DIR / "log4j2.properties"

JARS_STAMP = ".pom-sha256"  # in the libs dir: the pom the jars were fetched with

log = logging.getLogger(__name__)


def ensure_jars(libs_dir: Path = LIBS_DIR) -> Path:
    """Return a directory holding the Kafka jars, fetching them with Maven the first time.

    The jars are cached; a call finds them and does nothing. They are fetched again only when
    ``docker/kafka/pom.xml`` changed since (its sha256 is stored with the jars). The download
    goes to a temporary directory next to ``libs_dir`` that is renamed into place, so an
    interrupted fetch never leaves a half-filled cache; a file lock serialises concurrent calls.
    """
    libs_dir = Path(libs_dir)
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if _jars_current(libs_dir, digest):
        return libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalClusterError(
            "Maven (mvn) is not on PATH; it fetches the Kafka jars from Maven Central. "
            "Run bin/install (Debian: apt-get install maven)."
        )
    java_binary()  # fail now, not after a download, when Java is missing
    libs_dir.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(libs_dir.parent / f".{libs_dir.name}.lock"):
        if _jars_current(libs_dir, digest):  # another process fetched them while we waited
            return libs_dir
        _fetch_jars(mvn, libs_dir, digest)
    return libs_dir


def java_binary() -> str:
    """The ``java`` to run Kafka with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise LocalClusterError(
            "Java is not installed (Kafka 4 needs Java 17 or newer). "
            "Run bin/install (Debian: apt-get install openjdk-17-jre-headless)."
        )
    return found


def _jars_current(libs_dir: Path, digest: str) -> bool:
    stamp = libs_dir / JARS_STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest


def _fetch_jars(mvn: str, libs_dir: Path, digest: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{libs_dir.name}-fetch-", dir=libs_dir.parent))
    try:
        argv = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        log.info("fetching the Kafka jars: %s", " ".join(argv))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
            raise LocalClusterError(
                f"mvn could not fetch the Kafka jars (exit {proc.returncode}):\n"
                + "\n".join(output)
            )
        if not list(tmp.glob("kafka_2.13-*.jar")):
            raise LocalClusterError(f"mvn succeeded but {POM} yielded no kafka_2.13 jar")
        (tmp / JARS_STAMP).write_text(digest + "\n")
        stale = None
        if libs_dir.exists():  # fetched with an older pom
            stale = libs_dir.with_name(f".{libs_dir.name}-stale-{os.getpid()}")
            libs_dir.rename(stale)
        tmp.rename(libs_dir)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
