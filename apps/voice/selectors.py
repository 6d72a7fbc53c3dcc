def voice_commands_visible(*, queryset, user, sees_all: bool):
    queryset = queryset.select_related("created_by")
    return queryset if sees_all else queryset.filter(created_by=user)
