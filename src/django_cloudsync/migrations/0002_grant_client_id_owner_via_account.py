"""Each grant records the app that obtained it; the owner is the SocialAccount's user, not a copy.

Rows stored before get a blank ``client_id``, which means "the site's one CloudSync app". The
``user`` column goes: undoing this migration puts it back, filled from each row's SocialAccount.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def copy_owner_from_social_account(apps, schema_editor):  # type: ignore[no-untyped-def]
    token_model = apps.get_model("django_cloudsync", "CloudSyncToken")
    db = schema_editor.connection.alias
    for token in token_model.objects.using(db).select_related("social_account").iterator():
        token_model.objects.using(db).filter(pk=token.pk).update(user_id=token.social_account.user_id)


class Migration(migrations.Migration):
    dependencies = [
        ("django_cloudsync", "0001_initial"),
        ("socialaccount", "0006_alter_socialaccount_extra_data"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="cloudsynctoken",
            name="client_id",
            field=models.CharField(blank=True, max_length=191, verbose_name="CloudSync app (client id)"),
        ),
        migrations.RemoveIndex(model_name="cloudsynctoken", name="cloudsync_user_recent"),
        # Nullable first, so that undoing the removal can add the column back before filling it.
        migrations.AlterField(
            model_name="cloudsynctoken",
            name="user",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="cloudsync_tokens",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, copy_owner_from_social_account, elidable=True),
        migrations.RemoveField(model_name="cloudsynctoken", name="user"),
    ]
