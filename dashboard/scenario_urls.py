"""URLs of the failure scenario lab; included at ``scenarios/`` (namespace ``scenarios``)."""

from django.urls import path

from dashboard import scenario_views as views
from dashboard import soak_views

app_name = "scenarios"

urlpatterns = [
    path("", views.scenario_list, name="list"),
    path("start/", views.scenario_start, name="start"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>.json", views.run_json, name="run-json"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="cancel"),
    path("matrix/", views.matrix_page, name="matrix"),
    path("matrix.json", views.matrix_json, name="matrix-json"),
    path("soak/", soak_views.soak_start, name="soak-start"),
    path("runs/<int:pk>/soak.html", soak_views.report, name="soak-report"),
]
