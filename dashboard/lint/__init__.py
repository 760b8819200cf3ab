"""The guarantee lint in the dashboard (docs/lint.md): ``services`` (which clusters, one run,
the stored reports), ``views`` and ``urls`` (the Lint pages and ``/api/lint/``), ``tasks`` (the
beat task)."""
