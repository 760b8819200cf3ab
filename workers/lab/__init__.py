"""The failure scenario lab: inject a fault into real sentinel processes, measure, judge.

Framework-free (no Django). Modules, from the top:

- ``runner``: ``run(name, lab)`` runs one named scenario end to end and returns its
  ``ScenarioOutcome``; ``run_against()`` builds the ``Lab`` from plain values first.
- ``catalogue``: the ``Scenario`` template, the concrete scenarios, ``SCENARIOS``, ``catalog()``.
- ``lab``: ``Lab``, the environment of one run: progress, supervised waits, the lock, cleanup.
- ``brokeractions``: ``BrokerActions``, the lab's actions on the target cluster: checks, topics,
  broker faults it can undo.
- ``probes``: the sentinels under test (``Probe``) and their processes (``RoleProcess``).
- ``outcome``: run states, ``Expect``, ``promise()``, ``SemanticResult``, ``ScenarioOutcome``.
- ``limits``: ``Timeouts``, ``Load`` and the lab's other limits.
"""
