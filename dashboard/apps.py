from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Delivery Sentinel"

    def ready(self) -> None:
        # Load the Celery app so that @shared_task producers in web processes (Daphne,
        # management commands) send to the configured broker rather than Celery's default.
        # Logging out closes the session's live sockets, in every tab (dashboard.live.relay).
        from django.contrib.auth.signals import user_logged_out

        import workers.runtime.celery  # noqa: F401

        user_logged_out.connect(_close_live_sockets, dispatch_uid="close-live-sockets")


def _close_live_sockets(sender, request, user, **kwargs) -> None:
    from dashboard.live.relay import end_session

    end_session(request.session.session_key if request is not None else None)
