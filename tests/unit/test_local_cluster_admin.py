"""The local cluster tooling's admin requests (ACLs, SCRAM users) just after a start: a request
that meets a transient client error is sent again; any other error is raised at once."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaError, KafkaException

from workers.localkafka.admin import transient, with_retries
from workers.localkafka.cluster import coordinator_probes, java_string_hash, offsets_partition


def done(value=None, error: KafkaException | None = None) -> dict[str, Future]:
    future: Future = Future()
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
    return {"request": future}


def failure(code: int) -> KafkaException:
    return KafkaException(KafkaError(code, "as librdkafka says it"))


def test_it_sends_an_admin_request_again_after_a_replaced_broker_handle():
    replies = [done(error=failure(KafkaError._DESTROY_BROKER)), done()]
    with_retries(lambda: replies.pop(0), timeout=10)
    assert replies == []  # sent twice, the second answer taken


def test_it_raises_an_error_that_is_about_the_request_at_once():
    replies = [done(error=failure(KafkaError.SECURITY_DISABLED)), done()]
    with pytest.raises(KafkaException):
        with_retries(lambda: replies.pop(0), timeout=10)
    assert len(replies) == 1  # not sent again


def test_it_gives_up_on_a_transient_error_after_its_timeout():
    with pytest.raises(KafkaException):
        with_retries(lambda: done(error=failure(KafkaError._TRANSPORT)), timeout=0)


def test_it_tells_transient_errors_from_the_others():
    assert transient(failure(KafkaError._TIMED_OUT))
    assert not transient(failure(KafkaError.TOPIC_AUTHORIZATION_FAILED))


def test_a_nodes_jvm_gets_the_options_of_local_kafka_jvm_opts(monkeypatch, tmp_path):
    """bin/test starts its cluster with ``-XX:TieredStopAtLevel=1``; without the variable a
    node runs with the JVM's defaults (bin/up, the benchmarks)."""
    from workers.localkafka.node import JVM_OPTS_ENV, Node

    node = Node(1, tmp_path, 9092, 9093)
    monkeypatch.delenv(JVM_OPTS_ENV, raising=False)
    plain = node.java_argv("kafka.Kafka", "server.properties")
    assert not any(arg.startswith("-XX:TieredStopAtLevel") for arg in plain)
    monkeypatch.setenv(JVM_OPTS_ENV, "-XX:TieredStopAtLevel=1  -Dx='a b'")
    argv = node.java_argv("kafka.Kafka", "server.properties")
    cp = argv.index("-cp")
    assert argv[cp - 2 : cp] == ["-XX:TieredStopAtLevel=1", "-Dx=a b"]
    assert argv[cp:] == plain[plain.index("-cp") :]


def test_a_group_maps_to_its_offsets_partition_as_kafka_hashes_it():
    """Java's String.hashCode (Kafka: abs(groupId.hashCode) % partitions), and one probe group
    per partition of the offsets topic."""
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112
    assert java_string_hash("delivery-sentinel.1") == -1908587424  # wraps around 32 bits
    assert offsets_partition("delivery-sentinel.1", 12) == 1908587424 % 12
    probes = coordinator_probes(12)
    assert sorted(offsets_partition(g, 12) for g in probes) == list(range(12))
