"""The failure scenario lab and the soak in the dashboard: ``views`` and ``urls`` (the Scenarios
pages, namespace ``scenarios``), ``services`` (``queue_run``, ``queue_soak``), ``runs``
(cancelling a run, reaping runs whose runner died) and ``tasks`` (the Celery tasks)."""
