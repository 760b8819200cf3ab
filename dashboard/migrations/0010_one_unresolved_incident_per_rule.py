"""One unresolved incident per rule, enforced by the database (concurrent evaluations).

Before the constraint, a rule left with more than one unresolved incident (two evaluations
that raced) keeps its newest; the others are resolved with a note saying why."""

from django.db import migrations, models
from django.utils import timezone

NOTE = "resolved by migration 0010: a newer incident of the same rule was open"


def resolve_duplicates(apps, schema_editor):
    Incident = apps.get_model("dashboard", "Incident")
    IncidentEvent = apps.get_model("dashboard", "IncidentEvent")
    seen: set[int] = set()
    now = timezone.now()
    for incident in Incident.objects.exclude(state="resolved").order_by("rule_id", "-opened_at", "-pk"):
        if incident.rule_id not in seen:
            seen.add(incident.rule_id)
            continue
        incident.state = "resolved"
        incident.resolved_at = now
        incident.resolve_note = NOTE
        incident.save(update_fields=["state", "resolved_at", "resolve_note"])
        IncidentEvent.objects.create(incident=incident, at=now, kind="resolved", message=NOTE)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0009_channel_secrets"),
    ]

    operations = [
        migrations.RunPython(resolve_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="incident",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state", "resolved"), _negated=True),
                fields=("rule",),
                name="one_unresolved_incident_per_rule",
            ),
        ),
    ]
