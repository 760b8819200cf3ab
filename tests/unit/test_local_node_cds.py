"""Class data sharing for the local cluster's nodes (workers.localkafka.node): the first clean
stop writes the archive that every later start maps; nothing half-written is ever mapped."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.localkafka.node import CDS_DUMP_NAME, CDS_MIN_BYTES, JVM_OPTS_ENV, Node


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    libs = tmp_path / "kafka" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"jar")
    monkeypatch.setenv(JVM_OPTS_ENV, "-XX:TieredStopAtLevel=1")
    n = Node(1, tmp_path / "kafka" / "test", 29092, 29192, libs_dir=libs)
    n.dir.mkdir(parents=True)
    return n


def test_a_node_writes_the_archive_at_its_exit_until_one_exists_then_maps_it(node: Node) -> None:
    archive = node.cds_archive()
    assert node.cds_options() == [f"-XX:ArchiveClassesAtExit={node.dir / CDS_DUMP_NAME}"]
    (node.dir / CDS_DUMP_NAME).write_bytes(b"x" * CDS_MIN_BYTES)
    node.keep_cds_dump()  # after a clean stop
    assert archive.read_bytes() == b"x" * CDS_MIN_BYTES
    assert not (node.dir / CDS_DUMP_NAME).exists()
    assert node.cds_options() == [f"-XX:SharedArchiveFile={archive}"]
    # Another node's later dump never replaces it (nor lingers).
    (node.dir / CDS_DUMP_NAME).write_bytes(b"y" * CDS_MIN_BYTES)
    node.keep_cds_dump()
    assert archive.read_bytes() == b"x" * CDS_MIN_BYTES
    assert not (node.dir / CDS_DUMP_NAME).exists()


def test_a_dump_too_small_to_be_one_is_dropped_and_the_next_start_writes_again(node: Node) -> None:
    (node.dir / CDS_DUMP_NAME).write_bytes(b"half")
    node.keep_cds_dump()
    assert not node.cds_archive().exists() and not (node.dir / CDS_DUMP_NAME).exists()
    assert node.cds_options()[0].startswith("-XX:ArchiveClassesAtExit=")


def test_other_jars_or_jvm_options_have_an_archive_of_their_own(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = node.cds_archive()
    monkeypatch.setenv(JVM_OPTS_ENV, "")
    assert node.cds_archive() != first
    monkeypatch.setenv(JVM_OPTS_ENV, "-XX:TieredStopAtLevel=1")
    assert node.cds_archive() == first
    (node.libs_dir / "kafka-clients-4.1.1.jar").write_bytes(b"jar")
    assert node.cds_archive() != first
    assert first.parent == node.libs_dir.parent / "cds"
