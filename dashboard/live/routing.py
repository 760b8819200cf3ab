"""Websocket URL routes (mounted by ``dashboard.asgi``)."""

from django.urls import path

from dashboard.live import consumers

websocket_urlpatterns = [
    path("ws/overview/", consumers.OverviewSocketConsumer.as_asgi(), name="ws-overview"),
    path("ws/oncall/", consumers.OncallSocketConsumer.as_asgi(), name="ws-oncall"),
    path(
        "ws/sentinel/<int:sentinel_id>/",
        consumers.SentinelSocketConsumer.as_asgi(),
        name="ws-sentinel",
    ),
]
