"""The soak (``python -m workers.lab.soak``, docs/reliability.md): sentinels hosted by two
Celery workers, a seeded schedule of faults for many minutes, ground truth kept apart, every
promise judged. A program of its own, built on the scenario lab.

- ``__main__``: the command line.
- ``run``: ``Soak``, the run: its processes, the plan, the final judgement.
- ``faults``: the seeded plan and each fault's action and takeover; a fault asks the run only
  what ``faults.SoakRun`` offers.
- ``procs``: the soak's own Redis and two Celery workers, and the sentinel processes they host.
- ``watch``: sampling the status documents and processes, and the checks judged from them.
- ``truth``: ground truth, read from the raw streams and the topics, apart from the checker.
- ``report``: the report, JSON and HTML.
"""
