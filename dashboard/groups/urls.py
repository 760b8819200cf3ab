"""URLs of the consumer groups' pages (namespace ``groups``)."""

from django.urls import path

from dashboard.groups import views

app_name = "groups"
urlpatterns = [
    path("", views.index, name="index"),
    path("<str:cluster>/", views.cluster_page, name="cluster"),
    path("<str:cluster>/<path:group>/", views.group_page, name="group"),
]
