"""URLs of the on-call pages (namespace ``oncall``); included at the site root."""

from django.urls import path

from dashboard.oncall import views

app_name = "oncall"

urlpatterns = [
    path("incidents/", views.incident_list, name="incidents"),
    path("incidents/live/", views.live_fragments, name="live"),
    path("incidents/<int:pk>/", views.incident_detail, name="incident"),
    path("incidents/<int:pk>/acknowledge/", views.incident_acknowledge, name="acknowledge"),
    path("incidents/<int:pk>/resolve/", views.incident_resolve, name="resolve"),
    path("channels/", views.channel_list, name="channels"),
    path("channels/new/", views.channel_edit, name="channel-new"),
    path("channels/<int:pk>/", views.channel_edit, name="channel"),
    path("channels/<int:pk>/test/", views.channel_test, name="channel-test"),
    path("channels/<int:pk>/enable/", views.channel_enable, name="channel-enable"),
    path("silences/", views.silence_list, name="silences"),
    path("silences/<int:pk>/end/", views.silence_end, name="silence-end"),
    path("manage/sentinels/<int:sentinel_id>/rules/", views.sentinel_rules, name="rules"),
    path("manage/clusters/<str:cluster>/group-rules/", views.group_rules, name="group-rules"),
    path(
        "manage/clusters/<str:cluster>/group-rules/<int:pk>/",
        views.group_rule_edit,
        name="group-rule",
    ),
    path(
        "manage/clusters/<str:cluster>/group-rules/<int:pk>/delete/",
        views.group_rule_delete,
        name="group-rule-delete",
    ),
]
