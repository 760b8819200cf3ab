"""URLs of the failure scenario lab; included at ``scenarios/`` (namespace ``scenarios``)."""

from django.urls import path

from dashboard.lab import views

app_name = "scenarios"

urlpatterns = [
    path("", views.scenario_list, name="list"),
    path("start/", views.scenario_start, name="start"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>.json", views.run_json, name="run-json"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="cancel"),
    path("matrix/", views.matrix_page, name="matrix"),
    path("matrix.json", views.matrix_json, name="matrix-json"),
    path("soak/", views.soak_start, name="soak-start"),
    path("runs/<int:pk>/soak.html", views.report, name="soak-report"),
]
