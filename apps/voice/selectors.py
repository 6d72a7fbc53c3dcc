from apps.voice.models import TrainingPhrase


def voice_commands_visible(*, queryset, user, sees_all: bool):
    queryset = queryset.select_related("created_by")
    return queryset if sees_all else queryset.filter(created_by=user)


def trained_phrases(*, organization) -> dict[str, list[str]]:
    """The organization's training phrases by intent (``voice/train``), in the order taught."""
    trained: dict[str, list[str]] = {}
    rows = TrainingPhrase.objects.for_org(organization).order_by("intent", "created_at").values_list("intent", "phrase")
    for intent, phrase in rows:
        trained.setdefault(intent, []).append(phrase)
    return trained
