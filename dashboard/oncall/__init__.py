"""On-call: alert rules evaluated into incidents (``evaluation``), notifications through the
channels' integrations (``notification``, ``transports``), the pages (``views``, ``forms``,
``urls``, namespace ``oncall``), what other pages show of it (``services``) and the Celery
tasks (``tasks``)."""
