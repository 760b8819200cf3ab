"""The failure scenarios: what each injects, into which sentinels, and what each expects.

``Scenario.run()`` is the template every scenario follows: start one sentinel per semantic
(or per profile variant of one) on fresh topics, wait until records flow, inject the fault
(a ``FaultHook`` crash point armed in a consumer loop, a SIGKILL of a role process, or a
broker SIGKILL / SIGSTOP / clean restart through ``LocalCluster``), wait for recovery, stop
the producers, wait until every checker has settled, and judge each sentinel's counters
against what its semantic promises (``workers.lab.outcome.promise()``) as the fault changes
it. Broker faults are refused unless the lab has a ``LocalCluster`` serving exactly the
target's bootstrap servers; consumer- and producer-side scenarios run against any cluster.

``SCENARIOS`` registers them by name; ``catalog()`` describes them for the CLI and the pages.
"""

from __future__ import annotations

from typing import Any, ClassVar

from confluent_kafka import KafkaException

from workers.engine.documents import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SEMANTICS
from workers.engine.profiles import DEFAULT_PROFILES, Profile
from workers.lab.lab import Lab
from workers.lab.outcome import Expect, ScenarioAborted, SemanticResult, override, promise
from workers.lab.probes import Probe
from workers.localkafka import LocalClusterError


class Scenario:
    """A fault scenario: probes (sentinels under test), a fault, a recovery, expectations.

    ``run()`` is the template: start, wait for records, ``inject()``, ``recover()``, settle,
    judge each probe against ``expectations()``. Subclasses fill in the steps.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    broker_fault: ClassVar[bool] = False
    partitions: ClassVar[int] = 3

    def variants(self) -> list[tuple[str, Profile]]:
        """``(key, profile)`` of every sentinel under test; default: the three semantics."""
        return [(semantic, DEFAULT_PROFILES[semantic]) for semantic in SEMANTICS]

    def semantics(self) -> list[str]:
        return sorted({p.semantic for _key, p in self.variants()}, key=SEMANTICS.index)

    def layout(self, probe: Probe) -> list[str]:
        """Role groups of ``probe``, one process each."""
        return ["producer", probe.consumer_roles, "checker"]

    def leader(self, lab: Lab) -> int | None:
        """The broker that must lead every sentinel partition (broker scenarios), else None."""
        return None

    def preflight(self, lab: Lab) -> None:
        """Refuse or abort before anything starts."""
        if self.broker_fault:
            lab.require_local(self.name)
            lab.check_local_ready()
        brokers = lab.check_reachable()
        lab.replication_factor = min(3, len(brokers))

    def run(self, lab: Lab) -> list[SemanticResult]:
        lab.progress("creating topics and starting the sentinels", 2)
        probes = self.start(lab)
        lab.progress("waiting for records to flow", 10)
        lab.wait_flow(probes)
        lab.progress("injecting the fault", 25)
        self.inject(lab, probes)
        lab.progress("recovering", 45)
        self.recover(lab, probes)
        lab.progress("stopping the producers; waiting for the checkers to settle", 80)
        lab.settle(probes)
        lab.progress("judging", 97)
        return [probe.judge(self.expectations(probe)) for probe in probes]

    def start(self, lab: Lab) -> list[Probe]:
        leader = self.leader(lab)
        probes = []
        for key, profile in self.variants():
            probe = Probe(lab, key, profile, partitions=self.partitions)
            lab.probes.append(probe)
            lab.create_topics(probe, leader)
            probes.append(probe)
        for probe in probes:
            for roles in self.layout(probe):
                probe.start(roles)
        lab.watch_events([t for probe in probes for t in probe.topics])
        return probes

    def inject(self, lab: Lab, probes: list[Probe]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        lab.wait_progress(probes, "after the fault")

    def expectations(self, probe: Probe) -> list[Expect]:
        return promise(probe.semantic)


class ConsumerCrash(Scenario):
    """The consumer process is SIGKILLed by its fault hook at ``point``, then restarted.

    At-most-once and at-least-once: the hook in the consumer loop kills the process at the
    crash point, holding a batch; the fault event says which records. Exactly-once has no
    gap between commit and processing: its copier+verifier process is SIGKILLed from outside
    at whatever point it is."""

    point: ClassVar[str] = ""

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        for probe in probes:
            proc = probe.procs[probe.consumer_roles]
            proc.expect_exit = True
            if probe.spec.eos:
                proc.kill()
                probe.mark_fault("copier and verifier process SIGKILLed from outside", pid=proc.pid)
            else:
                probe.store.arm_fault(self.point)
        for probe in probes:
            if not probe.spec.eos:
                self.await_hook(lab, probe)

    def await_hook(self, lab: Lab, probe: Probe) -> None:
        proc = probe.procs[probe.consumer_roles]
        lab.wait(
            lambda: not proc.alive() and probe.events("fault"),
            lab.timeouts.fault,
            f"the {probe.key} consumer to reach its {self.point!r} crash point",
        )
        event = probe.events("fault")[0]
        probe.mark_fault(
            f"consumer SIGKILLed by its fault hook at {self.point!r}, holding a batch of "
            f"{event['batch']} records",
            point=self.point,
            batch=event["batch"],
            ranges=event["ranges"],
            pid=event.get("pid"),
        )

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        for probe in probes:
            probe.start(probe.consumer_roles)
        lab.wait_progress(probes, "after the consumer restart")


class CrashAfterCommit(ConsumerCrash):
    name = "consumer-crash-after-commit"
    title = "Consumer crash after commit"
    description = (
        "The consumer is SIGKILLed right after committing a batch. At-most-once commits "
        "before processing, so it loses exactly that batch and duplicates nothing; "
        "at-least-once had already processed it; exactly-once has no such gap."
    )
    point = "after-commit"

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.semantic == AT_MOST_ONCE:
            return override(base, Expect("lost", value=probe.detail["batch"]), Expect("pending"))
        if probe.semantic == AT_LEAST_ONCE:
            return override(base, Expect("duplicated"))
        return base


class CrashBeforeCommit(ConsumerCrash):
    name = "consumer-crash-before-commit"
    title = "Consumer crash before commit"
    description = (
        "The consumer is SIGKILLed right after processing a batch. At-least-once processes "
        "before committing, so the restarted consumer processes exactly that batch again and "
        "loses nothing; at-most-once had already committed it; exactly-once has no such gap."
    )
    point = "after-process"

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.semantic == AT_LEAST_ONCE:
            return override(base, Expect("duplicated", value=probe.detail["batch"]))
        if probe.semantic == AT_MOST_ONCE:
            probe.notes.append(
                "at-most-once commits before it processes: this crash came after both, so it "
                "lost nothing by itself (its acks=0 producer still may)"
            )
        return base


class BrokerScenario(Scenario):
    """A fault on the broker leading every sentinel partition (one partition per topic).

    The leader is chosen, not found: every sentinel topic is created with the same replica
    assignment, led by a node that is not the active KRaft controller, so one fault hits every
    semantic at the same moment and the controller quorum stays out of the picture."""

    broker_fault = True
    partitions = 1

    def layout(self, probe: Probe) -> list[str]:
        return ["producer", probe.consumer_roles + ",checker"]

    def leader(self, lab: Lab) -> int | None:
        local = lab.require_local(self.name)
        controller = local.status()["controller"]
        choices = [n for n in sorted(local.nodes) if n != controller]
        return choices[-1] if choices else sorted(local.nodes)[-1]

    def start(self, lab: Lab) -> list[Probe]:
        probes = super().start(lab)
        lab.victim = self.leader_now(lab, probes)
        return probes

    def leader_now(self, lab: Lab, probes: list[Probe]) -> int:
        local = lab.require_local(self.name)
        leaders = {local.leader_of(t, 0) for p in probes for t in p.topics}
        if len(leaders) != 1 or -1 in leaders:
            raise ScenarioAborted(f"sentinel partitions are not led by one broker: {leaders}")
        return leaders.pop()

    def wait_new_leader(self, lab: Lab, probes: list[Probe], old: int) -> None:
        local = lab.require_local(self.name)
        topics = [t for p in probes for t in p.topics]

        def elected() -> bool:
            try:
                return all(local.leader_of(t, 0) not in (old, -1) for t in topics)
            except (LocalClusterError, KafkaException):
                return False

        lab.wait(elected, lab.timeouts.fault, f"a new leader after node {old} failed")


class LostAcksAndRetries(BrokerScenario):
    name = "lost-acks-and-retries"
    title = "Lost acknowledgements and retries"
    description = (
        "The partition leader is frozen (SIGSTOP) longer than the producers' request timeout, "
        "so produce requests time out and are retried, then thawed (SIGCONT). At-least-once "
        "without idempotence may write a retried batch twice; with enable.idempotence=true it "
        "must not; at-most-once may lose."
    )
    pause_s = 5.0
    # librdkafka times a produce request out locally after socket.timeout.ms (request.timeout.ms
    # is the broker's wait for replicas); delivery.timeout.ms leaves room for retries. Statistics
    # every second: the producer's timeouts and retries reach its timeline during the freeze.
    fast_timeouts: ClassVar[dict[str, str]] = {
        "socket.timeout.ms": "1500",
        "request.timeout.ms": "1500",
        "delivery.timeout.ms": "20000",
        "retry.backoff.ms": "100",
        "statistics.interval.ms": "1000",
    }

    def variants(self) -> list[tuple[str, Profile]]:
        alo = DEFAULT_PROFILES[AT_LEAST_ONCE]
        return [
            (AT_MOST_ONCE, DEFAULT_PROFILES[AT_MOST_ONCE]),
            (
                "alo-idempotence-off",
                alo.variant(
                    "at-least-once, idempotence off",
                    producer={
                        **self.fast_timeouts,
                        "enable.idempotence": "false",
                        "max.in.flight.requests.per.connection": "5",
                    },
                ),
            ),
            (
                "alo-idempotence-on",
                alo.variant(
                    "at-least-once, idempotence on",
                    producer={**self.fast_timeouts, "enable.idempotence": "true"},
                ),
            ),
            (EXACTLY_ONCE, DEFAULT_PROFILES[EXACTLY_ONCE]),
        ]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        victim = lab.victim
        lab.pause_node(victim)
        for probe in probes:
            probe.mark_fault(
                f"leader node {victim} frozen (SIGSTOP) for {self.pause_s:g}s", node=victim
            )
        lab.hold(self.pause_s, f"node {victim} to stay frozen for {self.pause_s:g}s")
        lab.resume_node(victim)
        for probe in probes:
            timeouts = self.request_timeouts(probe)
            probe.detail["request_timeouts"] = timeouts
            probe.notes.append(f"{timeouts} produce requests timed out during the freeze")

    @staticmethod
    def request_timeouts(probe: Probe) -> int:
        """Produce requests librdkafka timed out (its REQTMOUT log lines), so retried."""
        proc = probe.procs["producer"]
        try:
            text = proc.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Timed out ProduceRequest in flight")

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.key == "alo-idempotence-on":
            return override(base, Expect("duplicated"))
        if probe.key == "alo-idempotence-off":
            return override(base, Expect("reordered", "may"))
        return base


class LeaderKill(BrokerScenario):
    name = "leader-kill"
    title = "Leader killed"
    description = (
        "The leader of the sentinel partitions is SIGKILLed under load, a new leader is "
        "elected, then the node is restarted. acks=all with min.insync.replicas=2 loses "
        "nothing acked; acks=1 and acks=0 report what they lost."
    )

    def variants(self) -> list[tuple[str, Profile]]:
        alo = DEFAULT_PROFILES[AT_LEAST_ONCE]
        return [
            ("acks-0", DEFAULT_PROFILES[AT_MOST_ONCE]),
            (
                "acks-1",
                alo.variant(
                    "at-least-once, acks=1", producer={"acks": "1", "enable.idempotence": "false"}
                ),
            ),
            ("acks-all", alo),
            (EXACTLY_ONCE, DEFAULT_PROFILES[EXACTLY_ONCE]),
        ]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        victim = lab.victim
        lab.kill_node(victim)
        for probe in probes:
            probe.mark_fault(f"leader node {victim} SIGKILLed", node=victim)

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        victim = lab.victim
        self.wait_new_leader(lab, probes, victim)
        lab.wait_progress(probes, "under the new leader")
        lab.progress(f"restarting node {victim}", 60)
        lab.start_node(victim)
        lab.wait_in_sync([t for p in probes for t in p.topics])
        lab.wait_progress(probes, f"after node {victim} rejoined")

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.key == "acks-1":
            # Records the killed leader alone acknowledged: lost, and where the new leader's
            # records took their offsets, divergent (the log rewritten, maybe truncated). All
            # one loss, which acks=1 gives up.
            gives_up = ("lost", "pending", "divergent", "truncated", "skipped")
            return override(base, *(Expect(counter, "may") for counter in gives_up))
        return base


class RollingRestart(BrokerScenario):
    name = "rolling-restart"
    title = "Rolling restart"
    description = (
        "Every broker is restarted cleanly in turn (SIGTERM, controlled shutdown) under load, "
        "each once every replica is back in sync. At-least-once and exactly-once lose "
        "nothing; exactly-once duplicates nothing."
    )
    partitions = 3

    def leader(self, lab: Lab) -> int | None:
        return None

    def start(self, lab: Lab) -> list[Probe]:
        return Scenario.start(self, lab)

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        local = lab.require_local(self.name)
        nodes = sorted(local.nodes)
        for probe in probes:
            probe.mark_fault(f"nodes {nodes} restarted cleanly one by one", nodes=nodes)
        for i, node in enumerate(nodes):
            lab.progress(
                f"restarting node {node} ({i + 1}/{len(nodes)})", 25 + 50 * i // len(nodes)
            )
            lab.stop_node(node)
            lab.start_node(node)
            lab.wait_in_sync()
            lab.wait_progress(probes, f"after node {node} restarted")

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        pass


class TransactionFencing(Scenario):
    name = "transaction-fencing"
    title = "Transaction fencing"
    description = (
        "Exactly-once only. (a) The copier is SIGKILLed in the middle of a transaction and a "
        "new instance with the same transactional.id takes over; (b) a second copier starts "
        "while the first runs, and the first is fenced. No loss, no duplicate, no aborted read."
    )

    def variants(self) -> list[tuple[str, Profile]]:
        eos = DEFAULT_PROFILES[EXACTLY_ONCE]
        return [
            ("crash-mid-transaction", eos.variant("exactly-once, copier crash mid-transaction")),
            ("two-instances", eos.variant("exactly-once, two copier instances")),
        ]

    def layout(self, probe: Probe) -> list[str]:
        return ["producer", "copier", "verifier,checker"]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        crash, twins = probes
        crash.procs["copier"].expect_exit = True
        crash.store.arm_fault("mid-transaction")
        first = twins.procs["copier"]
        first.expect_exit = True
        twins.start("copier", name="copier-2")
        twins.mark_fault("a second copier started with the same transactional.id", pid=first.pid)
        self.await_crash(lab, crash)
        lab.wait(
            lambda: not first.alive() and twins.events("fenced"),
            lab.timeouts.fault,
            "the first copier to be fenced and stop",
        )
        twins.extra["fenced"] = len(twins.events("fenced"))
        twins.notes.append(twins.events("fenced")[0]["message"])

    def await_crash(self, lab: Lab, probe: Probe) -> None:
        proc = probe.procs["copier"]
        lab.wait(
            lambda: not proc.alive() and probe.events("fault"),
            lab.timeouts.fault,
            "the copier to reach its 'mid-transaction' crash point",
        )
        event = probe.events("fault")[0]
        probe.mark_fault(
            f"copier SIGKILLed mid-transaction with {event['batch']} records in the open "
            f"transaction",
            batch=event["batch"],
            token=event.get("token"),
        )

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        crash = probes[0]
        crashed_token = crash.detail.get("token")
        crash.start("copier", name="copier-2")
        # Progress alone does not prove the takeover: the verifier may still be reading what
        # the crashed copier committed before it died. The new copier has taken over (and
        # recovered the open transaction, init_transactions first) once it has opened a
        # transaction of its own.
        lab.wait(
            lambda: crash.store.txn_state()[1] not in (None, crashed_token),
            lab.timeouts.fault,
            "the new copier to take over the transactional.id",
        )
        lab.wait_progress(probes, "after the takeover")
        crash.extra["txn_aborted_events"] = len(crash.events("txn-aborted"))

    def expectations(self, probe: Probe) -> list[Expect]:
        base = override(promise(EXACTLY_ONCE), Expect("processed", ref="acked"))
        if probe.key == "two-instances":
            return [*base, Expect("fenced", value=1)]
        return base


class RecordsDeleted(Scenario):
    name = "records-deleted"
    title = "Records deleted before they were read"
    description = (
        "The consumer stops cleanly (committing what it processed) while the producer goes on; "
        "every record it has not read is then deleted (DeleteRecords, as retention deletes "
        "what nobody read in time) and the consumer starts again at the new log start. Each "
        "semantic loses exactly the records deleted unread (no client setting keeps a record "
        "the broker deleted), and says why: the log start jumped. Touches only the scenario's "
        "own topics, on any cluster."
    )
    # Records left unread on every partition before the deletion.
    unread = 20

    def variants(self) -> list[tuple[str, Profile]]:
        # The producers that write no transaction markers: each offset deleted is a record,
        # so the ground truth is the offsets (exactly-once's copier reads a transactional
        # topic, where it is not).
        return [(s, DEFAULT_PROFILES[s]) for s in (AT_MOST_ONCE, AT_LEAST_ONCE)]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        for probe in probes:
            if not probe.procs[probe.consumer_roles].stop(lab.timeouts.stop):
                raise ScenarioAborted(f"{probe.key}: the consumer did not stop cleanly")
        starts = {probe.key: lab.committed(probe) for probe in probes}
        for probe in probes:
            if any(offset < 0 for offset in starts[probe.key].values()):
                raise ScenarioAborted(f"{probe.key}: nothing committed: {starts[probe.key]}")

        def unread() -> bool:
            return all(
                hw - starts[p.key][part] >= self.unread
                for p in probes
                for part, hw in lab.high_watermarks(p.spec.topic, p.spec.partitions).items()
            )

        lab.wait(unread, lab.timeouts.fault, f"{self.unread} unread records on every partition")
        # The log-start jump explains the loss only against a sample that knew the log start.
        watch = lab.events_watch
        if watch is not None:
            lab.wait(
                lambda: all(
                    watch.knows_log_starts(p.spec.topic, p.spec.partitions) for p in probes
                ),
                lab.timeouts.fault,
                "a sample of every partition's log start",
            )
        for probe in probes:
            upto = lab.high_watermarks(probe.spec.topic, probe.spec.partitions)
            lab.delete_records(probe.spec.topic, upto)
            start = starts[probe.key]
            deleted = sum(upto[part] - start[part] for part in upto)
            probe.mark_fault(
                f"{deleted} records deleted unread (DeleteRecords up to the log end)",
                deleted=deleted,
                committed=start,
                deleted_upto=upto,
            )

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        for probe in probes:
            probe.start(probe.consumer_roles)
        lab.wait_progress(probes, "after the consumer started at the new log start")

    def expectations(self, probe: Probe) -> list[Expect]:
        return override(promise(probe.semantic), Expect("lost", value=probe.detail["deleted"]))


class UncleanElection(BrokerScenario):
    name = "unclean-election"
    title = "Unclean leader election"
    description = (
        "At-least-once on two topics side by side, each with two replicas and "
        "min.insync.replicas=1, one allowing unclean elections and one not (every sentinel "
        "topic's setting). The follower stops, the leader alone acknowledges records, the "
        "producers stop with every record acknowledged, the leader is killed and the stale "
        "follower is started again. Where unclean elections are allowed it is elected from "
        "outside the ISR, and the records the old leader acknowledged past its log end are "
        "destroyed: counted exactly as lost, and as divergent once new records take their "
        "offsets, and explained by the unclean election; acks=all cannot prevent it. Where "
        "they are not, Kafka never elects it (KIP-966): the partition waits for the old "
        "leader, and nothing is lost."
    )
    # Records the leader acknowledges alone before it is killed.
    alone_records = 40
    UNCLEAN, CLEAN = "unclean-enabled", "unclean-disabled"

    def variants(self) -> list[tuple[str, Profile]]:
        alo = DEFAULT_PROFILES[AT_LEAST_ONCE]
        return [
            (self.UNCLEAN, alo.variant("at-least-once, unclean.leader.election.enable=true")),
            (
                self.CLEAN,
                # Its records wait out the outage in the producer's queue.
                alo.variant(
                    "at-least-once, unclean.leader.election.enable=false",
                    producer={"delivery.timeout.ms": "300000"},
                ),
            ),
        ]

    def layout(self, probe: Probe) -> list[str]:
        return ["producer", "consumer", "checker"]  # the consumer stops on its own

    def start(self, lab: Lab) -> list[Probe]:
        # The leader and the stale follower are the two nodes that are not the active KRaft
        # controller: with both down the quorum waits for the follower, never for the leader.
        local = lab.require_local(self.name)
        controller = local.status()["controller"]
        others = [n for n in sorted(local.nodes) if n != controller]
        if len(others) < 2:
            raise ScenarioAborted(f"two nodes besides the controller {controller} are needed")
        self.stale, self.old_leader = others[0], others[-1]
        probes = []
        for key, profile in self.variants():
            probe = Probe(
                lab, key, profile, partitions=1, replication_factor=2, min_insync_replicas=1
            )
            lab.probes.append(probe)
            unclean = "true" if key == self.UNCLEAN else "false"
            lab.create_topics(
                probe,
                replicas=[self.old_leader, self.stale],
                config={"unclean.leader.election.enable": unclean},
            )
            probes.append(probe)
        for probe in probes:
            for roles in self.layout(probe):
                probe.start(roles)
        lab.watch_events([probe.spec.topic for probe in probes])
        lab.victim = self.old_leader
        return probes

    @staticmethod
    def partition(lab: Lab, probe: Probe) -> tuple[int, list[int]]:
        """(leader, ISR) of the probe's partition as the metadata says now."""
        try:
            info = lab.admin().list_topics(probe.spec.topic, timeout=5).topics[probe.spec.topic]
            part = info.partitions[0]
        except (KafkaException, KeyError):
            return -1, []
        return part.leader, sorted(part.isrs)

    @staticmethod
    def log_end(lab: Lab, probe: Probe) -> int:
        return lab.high_watermarks(probe.spec.topic, 1)[0]

    def inject(self, lab: Lab, probes: list[Probe]) -> None:
        leader, stale = self.old_leader, self.stale
        unclean, clean = probes
        lab.wait_in_sync([p.spec.topic for p in probes])
        # The consumers stop cleanly (committing what they processed): they read nothing more
        # until the election is over.
        for probe in probes:
            if not probe.procs["consumer"].stop(lab.timeouts.stop):
                raise ScenarioAborted(f"{probe.key}: the consumer did not stop cleanly")
        lab.progress(f"stopping node {stale}: the ISR shrinks to the leader", 30)
        lab.stop_node(stale)
        lab.wait(
            lambda: all(self.partition(lab, p) == (leader, [leader]) for p in probes),
            lab.timeouts.broker,
            f"the ISR shrunk to node {leader}",
        )
        # The events are told against the watcher's last sight before the fault: one that read
        # the partitions with the shrunk ISR.
        watch = lab.events_watch
        if watch is not None:
            lab.wait(
                lambda: all(
                    watch.partition(p.spec.topic, 0).get("isr") == [leader] for p in probes
                ),
                lab.timeouts.fault,
                f"the events watcher seeing ISR [{leader}]",
            )
        shrunk_at = {p.key: self.log_end(lab, p) for p in probes}
        lab.wait(
            lambda: all(
                self.log_end(lab, p) - shrunk_at[p.key] >= self.alone_records for p in probes
            ),
            lab.timeouts.fault,
            f"{self.alone_records} records acknowledged by node {leader} alone",
        )
        # The producers stop (they flush): every record produced is acknowledged.
        for probe in probes:
            if not probe.procs["producer"].stop(lab.timeouts.stop):
                raise ScenarioAborted(f"{probe.key}: the producer did not stop cleanly")

        def reported() -> bool:
            totals = [p.totals() for p in probes]
            return all(
                t["produced"] > 0 and t["acked"] + t["failed"] == t["produced"] for t in totals
            )

        lab.wait(reported, lab.timeouts.fault, "every delivery report in")
        for probe in probes:
            probe.mark_fault(
                f"leader node {leader} SIGKILLed alone in the ISR; node {stale} started behind it",
                node=leader,
                stale=stale,
                leader_end=self.log_end(lab, probe),
            )
        lab.progress(f"killing node {leader}, starting node {stale}", 40)
        lab.kill_node(leader)
        lab.start_node(stale)  # the quorum is back; the controller elects node ``stale`` unclean
        lab.wait(
            lambda: self.partition(lab, unclean)[0] == stale,
            lab.timeouts.broker,
            f"node {stale} elected leader where unclean elections are allowed",
        )
        if watch is not None:
            # Seen before the old leader is back: once it is in the ISR again, the election
            # reads like a preferred one after an ISR growth the samples missed.
            lab.wait(
                lambda: watch.partition(unclean.spec.topic, 0).get("leader") == stale,
                lab.timeouts.fault,
                f"the events watcher seeing node {stale} lead",
            )
        leader_end, new_end = unclean.detail["leader_end"], self.log_end(lab, unclean)
        destroyed = max(0, leader_end - new_end)
        unclean.fault = (
            f"unclean election: node {stale} elected from outside the ISR [{leader}], "
            f"log end {leader_end} → {new_end}: {destroyed} acknowledged records destroyed"
        )
        unclean.detail.update(new_end=new_end, destroyed=destroyed)
        unclean.notes.append(unclean.fault)
        # Where unclean elections are not allowed the partition has no leader now (node
        # ``stale`` registered, behind the log: neither in the ISR nor eligible).
        clean_leader = self.partition(lab, clean)[0]
        clean.detail["leader_while_old_leader_down"] = clean_leader
        clean.notes.append(
            f"node {stale} never elected: no leader until node {leader} came back"
            if clean_leader == -1
            else f"node {clean_leader} led while node {leader} was down"
        )

    def recover(self, lab: Lab, probes: list[Probe]) -> None:
        unclean = probes[0]
        for probe in probes:
            probe.start("producer")  # unclean: its records land at the destroyed offsets
        # The old leader comes back: it truncates its log to the new leader's where the stale
        # follower was elected, and leads again where it was not.
        lab.spawn_node(self.old_leader)
        for probe in probes:
            probe.start("consumer")
        lab.wait_progress(probes, f"after node {self.old_leader} came back")
        # Every destroyed offset divergent: each holds a new record before the producer stops.
        end = unclean.detail["leader_end"]
        lab.wait(
            lambda: self.log_end(lab, unclean) >= end,
            lab.timeouts.progress,
            f"new records at every destroyed offset (up to {end})",
        )
        lab.wait_in_sync([p.spec.topic for p in probes])
        lab.stopped_nodes.discard(self.old_leader)

    def expectations(self, probe: Probe) -> list[Expect]:
        base = promise(probe.semantic)
        if probe.key == self.CLEAN:
            return [*base, Expect("failed")]
        destroyed = probe.detail["destroyed"]
        return override(
            base,
            Expect("lost", value=destroyed),
            Expect("divergent", value=destroyed),
            Expect("truncated", "may"),
        )


SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        CrashAfterCommit,
        CrashBeforeCommit,
        RecordsDeleted,
        LostAcksAndRetries,
        LeaderKill,
        RollingRestart,
        UncleanElection,
        TransactionFencing,
    )
}


def catalog() -> list[dict[str, Any]]:
    """Every scenario as plain data, in registry order (for the CLI and the pages)."""
    out = []
    for name, cls in SCENARIOS.items():
        scenario = cls()
        out.append(
            {
                "name": name,
                "title": cls.title,
                "description": cls.description,
                "broker_fault": cls.broker_fault,
                "semantics": scenario.semantics(),
                "variants": [
                    {"key": key, "semantic": p.semantic, "profile": p.name}
                    for key, p in scenario.variants()
                ],
            }
        )
    return out
