# Execution moved from apps.crews to apps.runs (same table): the reference follows, state only.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0001_initial'),
        ('workflows', '0002_run_version_cascade'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.AlterField(
                    model_name='steprun',
                    name='execution',
                    field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='step_run', to='runs.execution'),
                ),
                migrations.AlterField(
                    model_name='workflowrun',
                    name='execution',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='workflow_run', to='runs.execution'),
                ),
        ]),
    ]
