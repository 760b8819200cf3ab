"""URLs of the guarantee lint: its pages and its JSON endpoints (no namespace: the names
``lint``, ``lint-cluster``, ``lint-run``, ``api-lint`` and ``api-lint-check`` predate the
package); included at the site root."""

from django.urls import path

from dashboard.lint import views

urlpatterns = [
    path("lint/", views.index, name="lint"),
    path("lint/<str:cluster>/", views.cluster_page, name="lint-cluster"),
    path("lint/<str:cluster>/run/", views.run_now, name="lint-run"),
    path("api/lint/", views.api_report, name="api-lint"),
    path("api/lint/check/", views.api_check, name="api-lint-check"),
]
