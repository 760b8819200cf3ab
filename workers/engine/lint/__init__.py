"""Guarantee lint, pure: can a topic, on its cluster, deliver a semantic at all, and does a
client configuration keep its semantic's promise?

- ``rules``: the catalogue (``RULES``), one entry per check; ``docs/lint.md`` is generated from it
  (``python -m workers.engine.lint.rules``).
- ``topics``: the facts as dataclasses (``ClusterFacts``, ``TopicFacts``), the topic and cluster
  rules, verdicts and the report.
- ``client``: the properties parser and the client configuration rules (``check_text``).
"""
