# Execution moved from apps.crews to apps.runs (same table): the reference follows, state only.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0001_initial'),
        ('scheduler', '0002_schedule_workflow_alter_schedule_target_type'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.AlterField(
                    model_name='schedule',
                    name='last_execution',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='runs.execution'),
                ),
        ]),
    ]
