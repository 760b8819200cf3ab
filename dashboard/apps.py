from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Delivery Sentinel"

    def ready(self) -> None:
        # Load the Celery app so that @shared_task producers in web processes (Daphne,
        # management commands) send to the configured broker rather than Celery's default.
        import workers.runtime.celery  # noqa: F401
