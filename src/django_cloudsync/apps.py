from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CloudSyncConfig(AppConfig):
    name = "django_cloudsync"
    label = "django_cloudsync"
    verbose_name = _("CloudSync")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, receivers  # noqa: F401  (registers checks and signal receivers)
