"""Seed each plan's limits (seed 002 "Rate Limit Tiers"; standard between free and pro)."""
from django.db import migrations

PLANS = {
    # plan: (agent executions / hour, workflow executions / day, voice commands / hour)
    "free": (200, 50, 100),
    "standard": (500, 200, 250),
    "pro": (1000, 500, 500),
    "enterprise": (5000, 2000, 2000),
}


def seed(apps, schema_editor):
    QuotaPlan = apps.get_model("quotas", "QuotaPlan")
    for plan, (agent, workflow, voice) in PLANS.items():
        QuotaPlan.objects.get_or_create(plan=plan, defaults={
            "agent_executions_per_hour": agent, "workflow_executions_per_day": workflow,
            "voice_commands_per_hour": voice})


class Migration(migrations.Migration):
    dependencies = [("quotas", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
