# The run engine's models move here from apps.crews: state only, the tables (crews_*) stay as they are.

import apps.runs.models
import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0001_initial'),
        ('agents', '0001_initial'),
        ('crews', '0003_execution_waiting_for_approval'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.CreateModel(
                    name='Execution',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('kind', models.CharField(choices=[('crew', 'Crew'), ('orchestration', 'Orchestration'), ('agent_task', 'Agent task'), ('agent_command', 'Agent command'), ('agent_execute', 'Agent execute'), ('agent_prompt', 'Agent stream-prompt'), ('agent_test', 'Agent test'), ('workflow', 'Workflow'), ('workflow_step', 'Workflow step')], max_length=20)),
                        ('status', models.CharField(choices=[('PENDING', 'Pending'), ('PREPARING', 'Preparing'), ('RUNNING', 'Running'), ('COMPLETED', 'Completed'), ('FAILED', 'Failed'), ('CANCELLED', 'Cancelled'), ('WAITING_FOR_APPROVAL', 'Waiting for approval')], default='PENDING', editable=False, max_length=24)),
                        ('run_name', models.CharField(blank=True, max_length=300)),
                        ('inputs', models.JSONField(blank=True, default=dict)),
                        ('definition', models.JSONField(blank=True, default=dict, help_text='What runs, frozen at creation (crew YAML, task, command).')),
                        ('params', models.JSONField(blank=True, default=dict, help_text='LLM parameters of this run.')),
                        ('model', models.CharField(blank=True, max_length=200)),
                        ('result', models.JSONField(blank=True, null=True)),
                        ('error', models.TextField(blank=True)),
                        ('trace_id', models.CharField(db_index=True, default=apps.runs.models.new_trace_id, max_length=32)),
                        ('stream_id', models.CharField(blank=True, max_length=40)),
                        ('priority', models.PositiveSmallIntegerField(default=5, help_text='0 (lowest) … 9 (highest).')),
                        ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('completed_at', models.DateTimeField(blank=True, null=True)),
                        ('cancel_requested', models.BooleanField(default=False)),
                        ('attempts', models.PositiveSmallIntegerField(default=0)),
                        ('max_attempts', models.PositiveSmallIntegerField(default=1, help_text='Runs lost with their worker are requeued until this many attempts were made.')),
                        ('worker', models.CharField(blank=True, max_length=200)),
                        ('tokens_in', models.BigIntegerField(default=0)),
                        ('tokens_out', models.BigIntegerField(default=0)),
                        ('cost', models.DecimalField(decimal_places=6, default=0, max_digits=14)),
                        ('log_seq', models.BigIntegerField(default=0, editable=False, help_text='Last sequence number handed to a log row.')),
                        ('dedupe_key', models.CharField(blank=True, help_text='Callers that must not create a run twice (schedule ticks) key it.', max_length=200, null=True, unique=True)),
                        ('checkpoint', models.JSONField(blank=True, default=dict, help_text="What a run parked WAITING_FOR_APPROVAL resumes from (completed tasks' outputs, the pending step).")),
                        ('agent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='executions', to='agents.agent')),
                        ('created_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('crew', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='executions', to='crews.crew')),
                        ('orchestration', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='executions', to='crews.orchestration')),
                        ('organization', models.ForeignKey(editable=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.organization')),
                        ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='children', to='runs.execution')),
                    ],
                    options={
                        'db_table': 'crews_execution',
                        'ordering': ('-created_at',),
                        'abstract': False,
                    },
                ),
                migrations.CreateModel(
                    name='ExecutionEvent',
                    fields=[
                        ('id', models.BigAutoField(primary_key=True, serialize=False)),
                        ('from_status', models.CharField(blank=True, max_length=24)),
                        ('to_status', models.CharField(max_length=24)),
                        ('reason', models.TextField(blank=True)),
                        ('at', models.DateTimeField(db_index=True)),
                        ('execution', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='runs.execution')),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.organization')),
                    ],
                    options={
                        'db_table': 'crews_executionevent',
                        'ordering': ('id',),
                    },
                ),
                migrations.CreateModel(
                    name='ExecutionLog',
                    fields=[
                        ('id', models.BigAutoField(primary_key=True, serialize=False)),
                        ('seq', models.BigIntegerField()),
                        ('level', models.CharField(choices=[('debug', 'Debug'), ('info', 'Info'), ('warning', 'Warning'), ('error', 'Error')], default='info', max_length=10)),
                        ('message', models.TextField()),
                        ('data', models.JSONField(blank=True, default=dict)),
                        ('created_at', models.DateTimeField()),
                        ('execution', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='logs', to='runs.execution')),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.organization')),
                    ],
                    options={
                        'db_table': 'crews_executionlog',
                        'ordering': ('execution', 'seq'),
                    },
                ),
                migrations.CreateModel(
                    name='TraceSpan',
                    fields=[
                        ('id', models.BigAutoField(primary_key=True, serialize=False)),
                        ('trace_id', models.CharField(db_index=True, max_length=32)),
                        ('span_id', models.CharField(max_length=16)),
                        ('parent_span_id', models.CharField(blank=True, max_length=16)),
                        ('kind', models.CharField(choices=[('llm', 'LLM call'), ('tool', 'Tool call'), ('agent', 'Agent'), ('task', 'Task')], max_length=10)),
                        ('name', models.CharField(max_length=300)),
                        ('status', models.CharField(default='ok', max_length=10)),
                        ('agent_id', models.UUIDField(blank=True, null=True)),
                        ('model', models.CharField(blank=True, max_length=200)),
                        ('started_at', models.DateTimeField()),
                        ('ended_at', models.DateTimeField(blank=True, null=True)),
                        ('duration_ms', models.FloatField(blank=True, null=True)),
                        ('tokens_in', models.IntegerField(default=0)),
                        ('tokens_out', models.IntegerField(default=0)),
                        ('cost', models.DecimalField(decimal_places=6, default=0, max_digits=14)),
                        ('attributes', models.JSONField(blank=True, default=dict)),
                        ('execution', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='spans', to='runs.execution')),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.organization')),
                    ],
                    options={
                        'db_table': 'crews_tracespan',
                        'ordering': ('started_at', 'id'),
                    },
                ),
                migrations.CreateModel(
                    name='UsageRollup',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('agent_id', models.UUIDField(blank=True, help_text='Kept after the agent is deleted.', null=True)),
                        ('agent_name', models.CharField(blank=True, max_length=200)),
                        ('day', models.DateField()),
                        ('model', models.CharField(max_length=200)),
                        ('executions', models.PositiveIntegerField(default=0)),
                        ('llm_calls', models.PositiveIntegerField(default=0)),
                        ('tokens_in', models.BigIntegerField(default=0)),
                        ('tokens_out', models.BigIntegerField(default=0)),
                        ('cost', models.DecimalField(decimal_places=6, default=0, max_digits=14)),
                        ('created_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('organization', models.ForeignKey(editable=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.organization')),
                    ],
                    options={
                        'db_table': 'crews_usagerollup',
                        'ordering': ('-day',),
                        'abstract': False,
                    },
                ),
                migrations.AddIndex(
                    model_name='execution',
                    index=models.Index(fields=['organization', '-created_at'], name='exec_org_created'),
                ),
                migrations.AddIndex(
                    model_name='execution',
                    index=models.Index(fields=['organization', 'status'], name='exec_org_status'),
                ),
                migrations.AddIndex(
                    model_name='execution',
                    index=models.Index(fields=['agent', '-created_at'], name='exec_agent_created'),
                ),
                migrations.AddIndex(
                    model_name='execution',
                    index=models.Index(fields=['status', 'heartbeat_at'], name='exec_status_heartbeat'),
                ),
                migrations.AddConstraint(
                    model_name='execution',
                    constraint=models.UniqueConstraint(condition=models.Q(('stream_id', ''), _negated=True), fields=('stream_id',), name='uniq_execution_stream_id'),
                ),
                migrations.AddConstraint(
                    model_name='executionlog',
                    constraint=models.UniqueConstraint(fields=('execution', 'seq'), name='uniq_execution_log_seq'),
                ),
                migrations.AddConstraint(
                    model_name='tracespan',
                    constraint=models.UniqueConstraint(fields=('execution', 'span_id'), name='uniq_execution_span'),
                ),
                migrations.AddIndex(
                    model_name='usagerollup',
                    index=models.Index(fields=['organization', 'day'], name='usage_org_day'),
                ),
                migrations.AddConstraint(
                    model_name='usagerollup',
                    constraint=models.UniqueConstraint(fields=('organization', 'agent_id', 'day', 'model'), name='uniq_usage_rollup', nulls_distinct=False),
                ),
        ]),
    ]
