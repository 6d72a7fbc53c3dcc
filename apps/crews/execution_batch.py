"""``POST /api/v1/executions/batch``: up to 500 runs in one request and one transaction.

An item the document refuses (its shape: types, unknown keys, not exactly one target) makes the
whole request a 400 naming each such item (``executions[3].crew_id``), and nothing is created. A
well-formed item is answered exactly as ``POST /api/v1/executions`` would answer it alone (the same
view code, in its own savepoint): 202 with the created run, or its error envelope (an unknown crew,
a quota). The runs that were created commit together and are queued once the transaction commits.
"""

from __future__ import annotations

import copy

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response

from apps.crews.serializers import ExecutionCreatedSerializer, ExecutionCreateSerializer
from apps.crews.views import ExecutionViewSet
from apps.runs.services import execution_batch, execution_batch_write
from kai_platform.api.exceptions import exception_handler
from kai_platform.api.serializers import KaiSerializer, validated
from kai_platform.api.views import KaiAPIView

#: the most runs one batch may create
MAX_BATCH = 500


class ExecutionBatchSerializer(KaiSerializer):
    """What the view validates: the list itself; each item is validated as POST /executions does."""

    executions = serializers.ListField(
        child=serializers.JSONField(),
        min_length=1,
        max_length=MAX_BATCH,
        help_text=f"1 to {MAX_BATCH} bodies of POST /api/v1/executions.",
    )


class ExecutionBatchRequestSerializer(KaiSerializer):
    """The documented request: each item is a POST /api/v1/executions body."""

    executions = serializers.ListField(
        child=ExecutionCreateSerializer(),
        min_length=1,
        max_length=MAX_BATCH,
        help_text=f"1 to {MAX_BATCH} bodies of POST /api/v1/executions.",
    )


@extend_schema_field({"$ref": "#/components/schemas/ErrorEnvelope"})
class ErrorEnvelopeField(serializers.JSONField):
    pass


class ExecutionBatchItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The item's position in the request's list.")
    status = serializers.IntegerField(help_text="What POST /api/v1/executions would have answered (202 or an error).")
    execution = ExecutionCreatedSerializer(required=False, help_text="With status 202: the PENDING run.")
    error = ErrorEnvelopeField(required=False, help_text="Otherwise: the error envelope.")


class ExecutionBatchResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = ExecutionBatchItemSerializer(many=True)


def _item_request(request, body):
    """The batch's request as a request whose body is one item (same user, organization, role)."""
    item = copy.copy(request)
    item._full_data = body
    return item


class ExecutionBatchView(KaiAPIView):
    """Start many runs at once (one transaction, one answer per item, in order)."""

    @extend_schema(
        tags=["executions"],
        operation_id="executions_batch_create",
        request=ExecutionBatchRequestSerializer,
        responses={200: ExecutionBatchResultSerializer},
    )
    def post(self, request):
        """Create up to 500 runs in one transaction. Each item is answered as ``POST
        /api/v1/executions`` would answer it (202 and the PENDING run, or its error envelope); an
        item's error leaves the others created. More than 500 items (or none), or an item whose shape
        the document refuses, is a 400 for the whole request."""
        items = validated(ExecutionBatchSerializer, request)["executions"]
        _check_shapes(request, items)
        single = ExecutionViewSet(request=request, format_kwarg=None, args=(), kwargs={}, action="create")
        results: list[dict] = []
        item_of_run: dict[int, int] = {}  # the batch's run position → the item it was built for
        with transaction.atomic():
            # Each item is checked by the single route's code, which writes nothing inside the batch:
            # its run is built and kept; then all the runs are written with one statement per table.
            with execution_batch(organization=single.organization) as batch:
                for index, body in enumerate(items):
                    results.append({"index": index, **self._one(single, request, body, batch)})
                    if len(batch.runs) > len(item_of_run):
                        item_of_run[len(batch.runs) - 1] = index
            for position, exc in execution_batch_write(batch=batch).items():  # over the plan's quota
                index = item_of_run[position]
                results[index] = {"index": index, **_error(single, _item_request(request, items[index]), exc)}
        created = sum(1 for r in results if r["status"] < 400)
        return Response({"created": created, "failed": len(results) - created, "results": results})

    @staticmethod
    def _one(single, request, body, batch) -> dict:
        item_request = _item_request(request, body)
        single.request = item_request
        built = len(batch.runs)
        try:
            response = single.create(item_request)
        except APIException as exc:
            del batch.runs[built:]  # an item that fails creates nothing
            return _error(single, item_request, exc)
        return {"status": response.status_code, "execution": response.data}


def _check_shapes(request, items) -> None:
    """Every item is a body ``POST /api/v1/executions`` takes (the document's item schema), else a 400
    naming each item's errors; what the organization's objects and quotas decide is per item."""
    errors = []
    for body in items:
        serializer = ExecutionCreateSerializer(data=body, context={"request": request})
        errors.append({} if serializer.is_valid() else serializer.errors)
    if any(errors):
        raise ValidationError({"executions": errors})


def _error(single, item_request, exc) -> dict:
    response = exception_handler(exc, {"request": item_request, "view": single})
    return {"status": response.status_code, "error": response.data}
