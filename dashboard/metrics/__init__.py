"""The dashboard's metrics readers, by what they read.

- ``windows``: time ranges, metric windows (one-second from Redis, one-minute rollups from the
  database), chart series, summaries and the live windows;
- ``overview``: the overview grid's cells and sparklines;
- ``partitions``: the detail page's partition table;
- ``timeline``: the detail page's timeline of events and scenario runs.
"""
