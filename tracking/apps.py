from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Email tracking"
    default_auto_field = "django.db.models.BigAutoField"
