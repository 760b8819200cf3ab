"""Every Redis key the project uses: the one place their names are made.

Nothing outside ``workers.store`` formats a ``ds:`` key; the modules of this package make
theirs with the functions below.

Keys of one sentinel, all under ``ds:{sentinel id}:``:

- ``epoch``      the state epoch: a token (``{created ms}-{random}``) written when the
                 sentinel's state is created. Every write of the state below (runs, acks,
                 ledger, offsets, checkpoint) is made only while the epoch is still the one
                 its writer joined (``StateLost`` otherwise), so a Redis that lost the state
                 (a restart without persistence, FLUSHALL, eviction) never mixes old and new.
- ``writes``     count of the guarded writes of this epoch; a count that goes back (a failover
                 to a replica that was behind) declares the state lost too.
- ``lost``       set once the epoch's ``state-lost`` event is recorded (one event per loss).
- ``runs``       hash run id -> JSON metadata of every producer run.
- ``acks``       stream of the producer's delivery results (JSON, one entry per ~100 ms).
- ``ledger``     stream of processed records: the durable effect of "processing".
- ``offsets``    hash "topic:partition" -> next offset, for the exactly-once verifier, written in the
                 same MULTI as its ledger entry so its processing is itself exactly-once.
- ``aborted``    set of copier transaction tokens known to be aborted.
- ``txn``        hash with the copier's last opened / committing transaction token.
- ``checker``    hash: checker snapshot + the stream ids it has consumed (one MULTI).
- ``status``     the status document (JSON), rewritten about once a second.
- ``health``     hash role -> JSON {"ts", "error"} heartbeat of each sentinel process.
- ``events``     capped list of notable events (new run, state lost, fenced...).
- ``incarnation`` which sentinel (by its database row's incarnation) the state belongs to.
- ``w1``         stream of one-second metric windows (``workers.engine.documents.Window``).
- ``applied:{writer}`` the number of the last guarded write one writer (a role's store,
                 ``for_writer``) made, so that a write sent again after its reply was lost
                 (the consumer resends a ledger entry until Redis takes it; the producer a
                 delivery report) is not made twice. Expires
                 ``APPLIED_TTL_MS`` after the writer's last write.
- ``lease``      token of the worker process that runs the sentinel (``Lease``).
- ``fault``      hash ``point``, ``after``, ``action``: a crash point armed by the lab.
- ``drain``      ``requested`` while the producer is asked to stop cleanly (no new record, its
                 last delivery reports written, the consuming roles and the checker going on:
                 how the soak ends, in any hosting), ``done`` once it has.
- ``alerting``   what alert evaluation remembers between runs (``alert_state``).
- ``audit``      hash ``acks``, ``ledger``: the stream ids an auditor (the soak's ground truth)
                 has read up to; the checker trims no further (expires unless renewed).

Global keys: ``ds:workers`` (``WorkerRegistry``: the workers hosting sentinels, for placement);
``ds:scenario-lock`` (``LabLock``: one scenario at a time per Redis);
``ds:scenario-run:{run}:beat`` and ``:cancel`` (``ScenarioRuns``: a run's heartbeat, a cancel);
``ds:lint:{cluster}`` and ``ds:lint:{cluster}:running`` (``LintStore``: guarantee lint reports);
``ds:groups:{cluster}`` (``GroupStore``: hash group -> its bounded state, JSON),
``ds:groups:{cluster}:events`` (capped list of its groups' rewinds, skips and losses),
``ds:groups:{cluster}:lag:{group}`` (capped list of one group's lag samples, for its charts) and
``ds:groups:{cluster}:sample`` (when and how the last sample went) and
``ds:groups:{cluster}:alerting`` (hash group -> since when the on-call evaluation has seen it
stopped or stalled).

Keys of one cluster (by its name), under ``ds:cluster:{cluster}:`` (``ClusterStore``):

- ``watch``      token of the worker that watches the cluster (a ``Lease``: exactly one worker
                 runs the cluster's samplers, ``workers/runtime/watch.py``).
- ``samplers``   hash sampler name -> JSON ``{"at", "by", "error", "samples"}``: each
                 sampler's last step (Redis time in ms, the lease token it ran under, why it
                 failed or null, its steps so far under that token).
- ``ended``      JSON ``{"at", "by", "code", "why"}``: how the cluster's last watch process
                 ended without being asked to (Redis time in ms, the worker that saw it, its
                 exit status, in words); the worker starts it again after a back-off.
- ``sample``     the events sampler's last sample of the cluster (JSON,
                 ``workers.engine.clusterevents``): what its next sample is compared with.
- ``events``     stream of the cluster's events (field ``e``: JSON, ``clusterevents.diff``),
                 trimmed by age (``DS_CLUSTER_EVENTS_RETENTION_S``, 7 days).
"""

from __future__ import annotations

PREFIX = "ds:"
LAB_LOCK_KEY = PREFIX + "scenario-lock"
WORKERS_KEY = PREFIX + "workers"
# What a state epoch covers: forgotten together when a new epoch begins.
EPOCH_STATE_KEYS = (
    "runs", "acks", "ledger", "offsets", "aborted", "txn", "checker", "writes", "lost",
)  # fmt: skip
# Every key of every sentinel (``sentinel_id_of`` reads the id back).
SENTINEL_KEYS_MATCH = f"{PREFIX}*:*"


def sentinel_key(sentinel_id: int, name: str) -> str:
    """Key ``name`` of sentinel ``sentinel_id`` (``name`` "": the prefix of all its keys)."""
    return f"{PREFIX}{sentinel_id}:{name}"


def sentinel_id_of(key: bytes) -> int | None:
    """The sentinel a key (as SCAN returns it) belongs to; None for a global key."""
    middle = key.decode()[len(PREFIX) :].partition(":")[0]
    return int(middle) if middle.isdigit() else None


def scenario_run_key(run_id: str, what: str) -> str:
    """``beat`` or ``cancel`` of scenario run ``run_id``."""
    return f"{PREFIX}scenario-run:{run_id}:{what}"


def lint_key(cluster: str, suffix: str = "") -> str:
    """Cluster ``cluster``'s lint report (``suffix`` ":running": the claim on its next run)."""
    return f"{PREFIX}lint:{cluster}{suffix}"


def groups_key(cluster: str, suffix: str = "") -> str:
    """The consumer groups of ``cluster`` (``suffix`` ":events", ":sample", ":lag:{group}",
    ":alerting")."""
    return f"{PREFIX}groups:{cluster}{suffix}"


def cluster_key(cluster: str, name: str) -> str:
    """Key ``name`` of the cluster named ``cluster`` (by its name, as sentinel specs and the
    lint name it). Its middle part is never a number, so ``sentinel_id_of`` reads None."""
    return f"{PREFIX}cluster:{cluster}:{name}"
