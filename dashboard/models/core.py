"""Dashboard models: clusters, semantic profiles and sentinels.

Domain logic lives here (``Sentinel.to_spec()``, ``ensure_defaults()``); views, consumers and
tasks stay thin. Client properties may hold secrets (``sasl.password``...): they are stored
sealed or as references (``SealedPropertiesField``, ``workers.clientsecrets``), opened only to
build a client (``Cluster.client_config()``, ``Profile.to_data(opened=True)``, and the sentinel
process reading its spec), and masked wherever they are shown
(``workers.engine.profiles.mask_secrets``).
"""

from __future__ import annotations

import logging
import time
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import close_old_connections, models, transaction

from dashboard.models.fields import SealedPropertiesField
from workers.clients.validation import validate_profile, validate_properties
from workers.clientsecrets import SecretError, seal, unseal
from workers.engine.profiles import (
    COMMIT_STRATEGIES,
    DEFAULT_PROFILES,
    SEMANTICS,
    mask_secrets,
)
from workers.engine.profiles import (
    Profile as ProfileData,
)
from workers.engine.spec import HOSTING, SentinelSpec

log = logging.getLogger(__name__)

SEMANTIC_CHOICES = [(s, s) for s in SEMANTICS]
COMMIT_CHOICES = [(c, c) for c in COMMIT_STRATEGIES]
LOCAL_CLUSTER = "local"


class Cluster(models.Model):
    name = models.CharField(max_length=100, unique=True)
    bootstrap_servers = models.CharField(max_length=1000)
    # Cluster-wide client properties: security.protocol, sasl.*, ssl.* ...
    client_properties = SealedPropertiesField(default=dict, blank=True)
    is_local = models.BooleanField(default=False, help_text="the project's own local cluster")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def masked_properties(self) -> dict:
        return mask_secrets(self.client_properties)

    def client_config(self) -> dict:
        """The client properties in clear, references resolved in this process (SecretError
        names what cannot be opened): for building a client here, never for showing."""
        return unseal(self.client_properties)

    def clean(self) -> None:
        try:
            seal(self.client_properties)
            errors = validate_properties("producer", self.client_config())
        except SecretError as exc:
            raise ValidationError({"client_properties": [str(exc)]}) from None
        if errors:
            raise ValidationError({"client_properties": [f"{k}: {v}" for k, v in errors.items()]})


class Profile(models.Model):
    """A semantic profile: producer and consumer properties plus a commit strategy."""

    name = models.CharField(max_length=100, unique=True)
    semantic = models.CharField(max_length=20, choices=SEMANTIC_CHOICES)
    producer_properties = SealedPropertiesField(default=dict, blank=True)
    consumer_properties = SealedPropertiesField(default=dict, blank=True)
    commit_strategy = models.CharField(max_length=30, choices=COMMIT_CHOICES)
    builtin = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def to_data(self, opened: bool = False) -> ProfileData:
        """The profile as the engine knows it; secrets as stored unless ``opened`` (in clear,
        for building a client here: SecretError names what cannot be opened)."""
        convert = unseal if opened else dict
        return ProfileData(
            name=self.name,
            semantic=self.semantic,
            producer=convert(self.producer_properties),
            consumer=convert(self.consumer_properties),
            commit_strategy=self.commit_strategy,
        )

    def clean(self) -> None:
        try:
            seal(self.producer_properties)
            seal(self.consumer_properties)
            errors = validate_profile(self.to_data(opened=True))
        except SecretError as exc:
            raise ValidationError(str(exc)) from None
        if errors:
            by_field: dict[str, list[str]] = {}
            for key, message in errors.items():
                field = (
                    "producer_properties" if key.startswith("producer.") else "consumer_properties"
                )
                prop = key.split(".", 1)[1] if "." in key else key
                by_field.setdefault(field, []).append(f"{prop}: {message}")
            raise ValidationError(by_field)


class Sentinel(models.Model):
    name = models.CharField(max_length=100, unique=True)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="sentinels")
    profile = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="sentinels")
    topic = models.CharField(max_length=249)
    partitions = models.PositiveIntegerField(default=3)
    replication_factor = models.PositiveSmallIntegerField(default=3)
    rate_per_partition = models.FloatField(default=10.0, help_text="records/s per partition")
    record_size = models.PositiveIntegerField(default=64)
    grace_seconds = models.FloatField(default=10.0)
    slo_p99_ms = models.FloatField(default=1000.0)
    enabled = models.BooleanField(default=True)
    hosting = models.CharField(
        max_length=8,
        choices=list(HOSTING.items()),
        default="auto",
        help_text=(
            "light sentinels share one process per worker; 'auto' gives one processes of its"
            " own when it produces more than DS_SHARED_MAX_RATE records/s"
        ),
    )
    updated = models.DateTimeField(auto_now=True)
    # Tells this row's Redis state from a former sentinel's under the same id (a database
    # recreated while Redis kept its data): the runtime forgets state of another incarnation.
    incarnation = models.UUIDField(default=uuid.uuid4, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def semantic(self) -> str:
        return self.profile.semantic

    def to_spec(self) -> SentinelSpec:
        return SentinelSpec(
            id=self.pk,
            name=self.name,
            profile=self.profile.to_data(),
            bootstrap_servers=self.cluster.bootstrap_servers,
            cluster=self.cluster.name,
            client=dict(self.cluster.client_properties),
            topic=self.topic,
            partitions=self.partitions,
            replication_factor=self.replication_factor,
            rate_per_partition=self.rate_per_partition,
            record_size=self.record_size,
            grace_seconds=self.grace_seconds,
            slo_p99_ms=self.slo_p99_ms,
            incarnation=self.incarnation.hex,
            hosting=self.hosting,
        )


@transaction.atomic
def ensure_defaults() -> list[Sentinel]:
    """The local cluster, the three default profiles and one sentinel per semantic.

    Idempotent: existing rows are left as the user edited them.
    """
    cluster, _ = Cluster.objects.get_or_create(
        name=LOCAL_CLUSTER,
        defaults={"bootstrap_servers": settings.KAFKA_BOOTSTRAP_SERVERS, "is_local": True},
    )
    sentinels = []
    for semantic, data in DEFAULT_PROFILES.items():
        profile, _ = Profile.objects.get_or_create(
            name=data.name,
            defaults={
                "semantic": data.semantic,
                "producer_properties": data.producer,
                "consumer_properties": data.consumer,
                "commit_strategy": data.commit_strategy,
                "builtin": True,
            },
        )
        sentinel, _ = Sentinel.objects.get_or_create(
            name=semantic,
            defaults={"cluster": cluster, "profile": profile, "topic": f"sentinel.{semantic}"},
        )
        sentinels.append(sentinel)
    return sentinels


def enabled_specs() -> dict[int, SentinelSpec]:
    """Specs of the enabled sentinels by id (read by each worker's sentinel supervisor)."""
    close_old_connections()  # the supervisor thread outlives any single connection
    sentinels = Sentinel.objects.filter(enabled=True).select_related("cluster", "profile")
    return {s.pk: s.to_spec() for s in sentinels}


# State in Redis without a row is forgotten only when no process of it beat for this long:
# the lab, benchmarks and tests run sentinels that have no row.
FORGET_IDLE_S = 600


def forget_deleted_sentinels(now: float | None = None) -> list[int]:
    """Clear the Redis state of sentinels whose rows are gone and which nothing runs; the
    ids cleared.

    Deleting a row leaves its state (windows, events, checkpoints) in Redis; a Celery beat
    task calls this, so the web request that deletes a sentinel writes nothing to Redis."""
    from dashboard.redisclient import redis_client
    from workers.store.sentinel import SentinelStore, sentinel_ids

    now = time.time() if now is None else now
    client = redis_client()
    rows = set(Sentinel.objects.values_list("pk", flat=True))
    gone = []
    for pk in sorted(sentinel_ids(client) - rows):
        store = SentinelStore(client, pk)
        beats = [h.get("ts", 0) for h in store.health().values()]
        if now - max(beats, default=0) >= FORGET_IDLE_S:
            store.reset()
            gone.append(pk)
    return gone
