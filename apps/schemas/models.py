"""JSON Schemas an organization keeps for structured output (crew tasks' ``output_json`` /
``output_pydantic``, the ``json_schema:<name>`` guardrail). A schema has a name and a current
version; every change of its document writes a new ``JsonSchemaVersion`` and keeps the old ones,
so a crew may pin ``name@<version>``."""

from django.db import models

from kai_platform.tenancy.models import TenantModel


class JsonSchema(TenantModel):
    name = models.CharField(max_length=100, help_text="How crews name it (letters, digits, _ - .).")
    description = models.TextField(blank=True)
    schema = models.JSONField(help_text="The current version's JSON Schema document.")
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_jsonschema_org_name")]

    def __str__(self):
        return f"{self.name}@{self.version}"


class JsonSchemaVersion(TenantModel):
    json_schema = models.ForeignKey(JsonSchema, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    schema = models.JSONField()

    class Meta(TenantModel.Meta):
        ordering = ("-version",)
        constraints = [models.UniqueConstraint(fields=["json_schema", "version"], name="uniq_jsonschema_version")]

    def __str__(self):
        return f"{self.json_schema_id}@{self.version}"
