"""Django admin for the domain models (the Manage pages are the everyday UI)."""

from django.contrib import admin

from dashboard.models import Cluster, MetricWindow, Profile, Sentinel


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    # client_properties may hold secrets: not on the list page (the edit form is staff-only).
    list_display = ("name", "bootstrap_servers", "is_local")


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("name", "semantic", "commit_strategy", "builtin")
    list_filter = ("semantic",)


@admin.register(Sentinel)
class SentinelAdmin(admin.ModelAdmin):
    list_display = ("name", "cluster", "profile", "topic", "enabled")
    list_filter = ("enabled", "cluster", "profile__semantic")


@admin.register(MetricWindow)
class MetricWindowAdmin(admin.ModelAdmin):
    list_display = ("sentinel", "start", "resolution", "verdict")
    list_filter = ("sentinel", "resolution")
