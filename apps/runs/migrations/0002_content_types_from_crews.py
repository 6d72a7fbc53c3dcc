# The content types (and so the permissions and admin log entries) of the moved models follow them
# from app label "crews" to "runs".

from django.db import migrations

MOVED = ("execution", "executionevent", "executionlog", "tracespan", "usagerollup")


def relabel(apps, schema_editor, source="crews", target="runs"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if ContentType.objects.filter(app_label=target, model=model).exists():
            continue
        ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def unlabel(apps, schema_editor):
    relabel(apps, schema_editor, source="runs", target="crews")


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('runs', '0001_initial'),
    ]

    operations = [migrations.RunPython(relabel, unlabel)]
