from django.core.files.storage import default_storage

from apps.files.models import StoredFile


def open_file(*, stored: StoredFile):
    return default_storage.open(stored.storage_key, "rb")


def files_of(*, organization):
    return StoredFile.objects.for_org(organization)
