"""Live updates in the browser: the websocket consumers (``consumers``), their URL routes
(``routing``, mounted by ``dashboard.asgi``) and the dashboard's own publishing to the Channels
groups (``relay``). Sentinel processes publish through ``workers.runtime.publish``."""
