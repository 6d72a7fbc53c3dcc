"""Where a crew task's output goes besides the run's result: ``output_file`` (a file of the files
app, the path's directories kept as a prefix in its metadata) and ``callback`` (an outbound
webhook subscription, by name or id, gets ``crew.task_completed``)."""

from __future__ import annotations

import posixpath

from apps.files.models import StoredFile
from apps.files.services import file_store_bytes
from apps.runs.runner import RunFailed
from apps.webhooks.services import webhook_deliver

CALLBACK_EVENT = "crew.task_completed"


def _clean_path(path: str) -> tuple[str, str]:
    """(directory prefix, file name) of a relative path; ``..`` and absolute paths are refused."""
    normal = posixpath.normpath(path.replace("\\", "/").strip())
    if normal.startswith(("/", "..")) or normal in (".", ""):
        raise RunFailed(f"output_file {path!r} must be a relative path inside the crew's files", type="output_file")
    directory, name = posixpath.split(normal)
    return directory, name


def store_output_file(ctx, task_key: str, path: str, content: str, *, create_directory: bool) -> dict:
    """Store the task's output as a file; returns ``{file_id, path}``. Without ``create_directory``
    the directory must already hold a file of the organization (CrewAI refuses a missing directory)."""
    directory, name = _clean_path(path)
    organization = ctx.organization
    if (
        directory
        and not create_directory
        and not StoredFile.objects.for_org(organization).filter(metadata__directory=directory).exists()
    ):
        raise RunFailed(
            f"task {task_key!r}: output_file directory {directory!r} does not exist and create_directory is false",
            type="output_file",
        )
    stored = file_store_bytes(
        organization=organization,
        user=ctx.execution.created_by,
        content=content.encode(),
        name=name,
        execution_id=ctx.execution.pk,
        metadata={
            "path": f"{directory}/{name}" if directory else name,
            "directory": directory,
            "task": task_key,
            "source": "crew_output_file",
        },
    )
    ctx.recorder.log(f"task {task_key} wrote {path} (file {stored.pk})", task=task_key, file_id=str(stored.pk))
    return {"file_id": str(stored.pk), "path": stored.metadata["path"]}


def send_callback(ctx, reference: str, data: dict) -> None:
    delivery = webhook_deliver(
        organization=ctx.organization,
        reference=reference,
        event_type=CALLBACK_EVENT,
        data=data,
        execution_id=ctx.execution.pk,
    )
    if delivery is None:
        raise RunFailed(
            f"task {data.get('task')!r}: callback names webhook {reference!r}, which the organization "
            "does not have (or is inactive)",
            type="callback",
        )
    ctx.recorder.log(
        f"task {data.get('task')} sent to webhook {reference}", task=data.get("task"), delivery_id=str(delivery.pk)
    )
