"""A rule says whether its incident resolves by itself once clear; a violation's does not.

Existing violation rules are turned off, as new ones are made (``workers.engine.alerts``): a
violation is a past event with a permanent consequence, left for a person to resolve."""

from django.db import migrations, models


def violations_stay(apps, schema_editor):
    AlertRule = apps.get_model("dashboard", "AlertRule")
    AlertRule.objects.filter(kind="violated").update(resolves_itself=False)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0010_one_unresolved_incident_per_rule"),
    ]

    operations = [
        migrations.AddField(
            model_name="alertrule",
            name="resolves_itself",
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(violations_stay, migrations.RunPython.noop),
    ]
