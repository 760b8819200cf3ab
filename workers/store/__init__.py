"""The store: every Redis key the project uses, and every read and write of them.

Nothing else formats a ``ds:`` key; each caller imports the room it needs:

- ``keys``: the name of every key (the one place they are made) and what each holds;
- ``connection``: ``connect(url)``, the Redis client;
- ``epoch``: the state epoch, the epoch-guarded, write-once Lua script, ``StateLost``;
- ``sentinel``: ``SentinelStore``, one sentinel's state (runs, acks and ledger streams,
  offsets, checkpoint, status and windows, events, health, fault hooks);
- ``coordination``: which worker runs which sentinel (``Lease``, ``lease_holders``,
  ``WorkerRegistry``);
- ``lab``: one scenario at a time (``LabLock``) and runs in progress (``ScenarioRuns``);
- ``lint``: guarantee lint reports (``LintStore``);
- ``cluster``: one cluster as a whole (``ClusterStore``): its watch lease, its samplers' steps.
"""
