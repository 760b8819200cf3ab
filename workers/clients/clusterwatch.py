"""Reading a cluster for its watcher: one sample (``workers.engine.clusterevents``) per call.

Per sample: ``describe_topics`` of the watched topics (leaders, replicas, ISR, topic ids),
``list_offsets`` earliest and latest of their partitions (log start, high watermark, and the
leader epoch, which librdkafka gives with the latest offset), ``describe_cluster`` (the
brokers) and a TCP connection to each broker ever seen (``connect_error``: a killed broker
shows at once, not when the controller fences it); every ``CONFIG_EVERY_S`` also
``describe_configs`` of the topics (``min.insync.replicas``, ``unclean.leader.election.enable``).
What fails is left out of the sample (None), never guessed: the events compare only what was
read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec, ResourceType

from workers.clients.kafka import connect_error
from workers.engine import brokerhealth

# Admin requests wait at most this long, and a whole sample at most STEP_BUDGET_S: what has
# not answered by then is left out of the sample.
REQUEST_TIMEOUT_S = 4.0
STEP_BUDGET_S = 10.0
CONNECT_TIMEOUT_S = 1.0
# Topic configs change rarely: read them this often.
CONFIG_EVERY_S = 60.0


# Errors that say the request got no answer (rather than an answer such as "no such topic").
_UNANSWERED = frozenset({KafkaError._TIMED_OUT, KafkaError._TIMED_OUT_QUEUE, KafkaError._TRANSPORT})


def _result(future: Future, deadline: float, unanswered: list | None = None) -> Any:
    """The future's result by ``deadline`` (monotonic), or None when it failed or is late
    (the sample leaves that part out); a request that got no answer is noted in
    ``unanswered``."""
    try:
        return future.result(timeout=max(0.05, deadline - time.monotonic()))
    except FutureTimeout:
        if unanswered is not None:
            unanswered.append("late")
        return None
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if unanswered is not None and isinstance(err, KafkaError) and err.code() in _UNANSWERED:
            unanswered.append(err.name())
        return None
    except Exception:  # librdkafka's own error types
        return None


class ClusterReader:
    """Samples the topics ``topics`` of one cluster (``conf``: its client properties with
    ``bootstrap.servers``, secrets opened)."""

    def __init__(self, conf: Mapping[str, Any], topics: list[str] | tuple[str, ...]) -> None:
        self.topics = list(topics)
        self.errors: deque[str] = deque(maxlen=20)  # the client's last errors (error_cb)
        self.conf = dict(conf)
        self.admin = self._admin()
        self.renewals = 0  # admin clients replaced after a blind sample (see ``sample``)
        self.configs: dict[str, dict[str, Any]] = {}
        self.configs_at = float("-inf")
        self.requests = 0  # admin requests asked for so far (the benchmark reads it)
        self.deadline = 0.0  # the current sample's end at the latest (monotonic)

    def _admin(self) -> AdminClient:
        return AdminClient(
            {**self.conf, "log_level": 0, "error_cb": lambda err: self.errors.append(err.str())}
        )

    def close(self) -> None:
        self.admin.poll(0)

    def sample(
        self, brokers_before: Mapping[str, Mapping[str, Any]], now: float | None = None
    ) -> dict:
        """One sample (``workers.engine.clusterevents``); ``brokers_before``: the previous
        sample's brokers (``brokerhealth.track`` keeps each broker's history)."""
        now = time.time() if now is None else now
        self.deadline = time.monotonic() + STEP_BUDGET_S
        t = REQUEST_TIMEOUT_S
        described = self.admin.describe_topics(
            TopicCollection(self.topics), request_timeout=t
        ) if self.topics else {}  # fmt: skip
        cluster = self.admin.describe_cluster(request_timeout=t)
        self.requests += 2
        if time.monotonic() - self.configs_at >= CONFIG_EVERY_S and self.topics:
            self.read_configs()
        topics: dict[str, dict[str, Any]] = {}
        unanswered: list[str] = []
        for name, future in described.items():
            desc = _result(future, self.deadline, unanswered)
            if desc is None:
                continue
            parts = {}
            for p in desc.partitions:
                leader = p.leader.id if p.leader is not None else -1
                parts[str(p.id)] = {
                    "leader": leader,
                    "epoch": None,
                    "replicas": [n.id for n in p.replicas],
                    "isr": [n.id for n in p.isr],
                    "start": None,
                    "end": None,
                }
            config = self.configs.get(name, {})
            topics[name] = {
                "id": str(desc.topic_id) if desc.topic_id is not None else None,
                "min_isr": config.get("min_isr"),
                "unclean": config.get("unclean"),
                "partitions": parts,
            }
        self.read_offsets(topics)
        brokers = self.read_brokers(
            _result(cluster, self.deadline, unanswered), brokers_before, now
        )
        if unanswered:
            # Blind: a client can stay stuck on a connection that no longer answers (a
            # stopped broker) long after the cluster moved on. The next sample asks with a
            # fresh client, which bootstraps from whichever brokers answer.
            self.admin = self._admin()
            self.renewals += 1
        return {"at": now, "brokers": brokers, "topics": topics}

    def read_offsets(self, topics: dict[str, dict[str, Any]]) -> None:
        """Fill each partition's ``start``, ``end`` and ``epoch`` (its leader's, from the
        latest offset); a partition without a leader is not asked."""
        wanted = [
            TopicPartition(name, int(pid))
            for name, topic in topics.items()
            for pid, part in topic["partitions"].items()
            if part["leader"] >= 0
        ]
        if not wanted:
            return
        t = REQUEST_TIMEOUT_S
        earliest = self.admin.list_offsets(
            {tp: OffsetSpec.earliest() for tp in wanted}, request_timeout=t
        )
        latest = self.admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in wanted}, request_timeout=t
        )
        self.requests += 2
        for tp, future in earliest.items():
            info = _result(future, self.deadline)
            if info is not None and info.offset >= 0:
                topics[tp.topic]["partitions"][str(tp.partition)]["start"] = info.offset
        for tp, future in latest.items():
            info = _result(future, self.deadline)
            if info is None or info.offset < 0:
                continue
            part = topics[tp.topic]["partitions"][str(tp.partition)]
            part["end"] = info.offset
            epoch = getattr(info, "leader_epoch", None)
            part["epoch"] = epoch if epoch is not None and epoch >= 0 else None

    def read_configs(self) -> None:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in self.topics]
        futures = self.admin.describe_configs(resources, request_timeout=REQUEST_TIMEOUT_S)
        self.requests += 1
        read_all = True
        for resource, future in futures.items():
            entries = _result(future, self.deadline)
            if entries is None:
                read_all = False
                continue
            min_isr = entries.get("min.insync.replicas")
            unclean = entries.get("unclean.leader.election.enable")
            self.configs[resource.name] = {
                "min_isr": int(min_isr.value) if min_isr is not None and min_isr.value else None,
                "unclean": (unclean.value == "true") if unclean is not None else None,
            }
        # A topic whose configs could not be read is asked again at the next sample.
        self.configs_at = time.monotonic() if read_all else float("-inf")

    def read_brokers(
        self, cluster: Any, before: Mapping[str, Mapping[str, Any]], now: float
    ) -> dict[str, dict[str, Any]]:
        if cluster is not None:
            seen = {str(n.id): f"{n.host}:{n.port}" for n in cluster.nodes}
        else:  # the metadata did not come: nobody left it, the connections say who answers
            seen = {
                bid: doc.get("host", "") for bid, doc in before.items() if doc.get("in_metadata")
            }
        hosts = {**{bid: doc.get("host", "") for bid, doc in before.items()}, **seen}
        # Within what is left of the step's budget, and at least a tenth of a second each.
        each = min(CONNECT_TIMEOUT_S, (self.deadline - time.monotonic()) / max(1, len(hosts)))
        failures = {
            bid: connect_error(host, max(0.1, each)) if host else "no address known"
            for bid, host in hosts.items()
        }
        return brokerhealth.track(before, seen, failures, now)
