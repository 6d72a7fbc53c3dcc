"""Operator console for approvals: pending ones first, approve/reject from the list."""

from django.contrib import admin, messages

from apps.approvals import services
from apps.approvals.models import Approval, ApprovalStatus
from kai_platform.api.errors import Conflict


class PendingFilter(admin.SimpleListFilter):
    title = "pending"
    parameter_name = "pending"

    def lookups(self, request, model_admin):
        return (("yes", "Pending"), ("no", "Answered"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=ApprovalStatus.PENDING)
        if self.value() == "no":
            return queryset.exclude(status=ApprovalStatus.PENDING)
        return queryset


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    list_display = (
        "question",
        "organization",
        "source",
        "status",
        "step_id",
        "assignee_role",
        "deadline",
        "default_action",
        "resolved_by",
        "created_at",
    )
    list_filter = (PendingFilter, "status", "source", "timed_out", "organization")
    search_fields = ("=id", "question", "step_id", "=execution__id")
    list_select_related = ("organization", "resolved_by", "assignee_user")
    readonly_fields = [f.name for f in Approval._meta.fields]
    actions = ["approve", "reject"]

    def has_add_permission(self, request):
        return False  # approvals are asked by runs

    def has_change_permission(self, request, obj=None):
        return False

    def _answer(self, request, queryset, approve: bool):
        done = 0
        for approval in queryset.filter(status=ApprovalStatus.PENDING):
            try:
                services.approval_resolve(
                    approval=approval,
                    actor=request.user,
                    role=None,
                    approve=approve,
                    feedback=f"{'approved' if approve else 'rejected'} from the console",
                    operator=True,
                )
                done += 1
            except Conflict:
                pass
        self.message_user(request, f"{'Approved' if approve else 'Rejected'} {done} approval(s).", messages.SUCCESS)

    @admin.action(description="Approve the selected pending approvals (the runs resume)")
    def approve(self, request, queryset):
        self._answer(request, queryset, True)

    @admin.action(description="Reject the selected pending approvals (the runs fail)")
    def reject(self, request, queryset):
        self._answer(request, queryset, False)
