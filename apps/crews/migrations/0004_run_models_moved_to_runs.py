# The run engine's models moved to apps.runs (same tables): removed from this app's state only.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('crews', '0003_execution_waiting_for_approval'),
        ('runs', '0001_initial'),
        ('approvals', '0002_execution_moved_to_runs'),
        ('scheduler', '0003_execution_moved_to_runs'),
        ('workflows', '0003_execution_moved_to_runs'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.DeleteModel(name='ExecutionEvent'),
            migrations.DeleteModel(name='ExecutionLog'),
            migrations.DeleteModel(name='TraceSpan'),
            migrations.DeleteModel(name='UsageRollup'),
            migrations.DeleteModel(name='Execution'),
        ]),
    ]
