"""Dashboard models: clusters, profiles, sentinels, metric windows, alerts (added by later issues)."""
