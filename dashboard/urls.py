from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import api, cluster_views, prometheus, tokens_views, views
from dashboard.api_v1 import api as api_v1

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    # Django's LogoutView accepts POST only (a GET must not change state).
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    # Pages
    path("sentinels/<int:sentinel_id>/", views.sentinel_detail, name="sentinel-detail"),
    path(
        "sentinels/<int:sentinel_id>/partitions/",
        views.sentinel_partitions,
        name="sentinel-partitions",
    ),
    path("compare/", views.compare_view, name="compare"),
    path("clusters/<int:cluster_id>/", cluster_views.cluster_page, name="cluster"),
    path(
        "clusters/<int:cluster_id>/state/",
        cluster_views.cluster_state_part,
        name="cluster-state",
    ),
    path("manage/", views.manage, name="manage"),
    path("manage/clusters/new/", views.manage_edit, {"kind": "cluster"}, name="cluster-new"),
    path("manage/clusters/<int:pk>/", views.manage_edit, {"kind": "cluster"}, name="cluster-edit"),
    path("manage/profiles/new/", views.manage_edit, {"kind": "profile"}, name="profile-new"),
    path("manage/profiles/<int:pk>/", views.manage_edit, {"kind": "profile"}, name="profile-edit"),
    path("manage/sentinels/new/", views.manage_edit, {"kind": "sentinel"}, name="sentinel-new"),
    path(
        "manage/sentinels/<int:pk>/", views.manage_edit, {"kind": "sentinel"}, name="sentinel-edit"
    ),
    path(
        "manage/sentinels/<int:sentinel_id>/toggle/",
        views.sentinel_toggle,
        name="sentinel-toggle",
    ),
    # Guarantee lint: its pages and /api/lint/
    path("", include("dashboard.lint.urls")),
    path("scenarios/", include("dashboard.lab.urls")),
    path("groups/", include("dashboard.groups.urls")),
    # On-call: incidents, channels, silences, alert rules
    path("", include("dashboard.oncall.urls")),
    # JSON API
    path("api/sentinels/", api.sentinels, name="api-sentinels"),
    path("api/sentinels/<int:sentinel_id>/", api.sentinel, name="api-sentinel"),
    path("api/sentinels/<int:sentinel_id>/windows/", api.windows, name="api-sentinel-windows"),
    path("api/v1/", api_v1.urls),
    path("metrics", prometheus.metrics, name="metrics"),
    path("tokens/", tokens_views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", tokens_views.revoke, name="token-revoke"),
    path("admin/", admin.site.urls),
]
