"""The local three-node Apache Kafka cluster (KRaft, combined broker + controller nodes).

- ``jars``: Kafka as plain jars from Maven Central (``docker/kafka/pom.xml``, fetched once into
  ``.local/kafka/libs``), and the ``java`` that runs them.
- ``node``: one node: its directory, ``server.properties``, process and pid file.
- ``cluster``: ``LocalCluster``, the nodes together: start, stop, status, topics, waits.
- ``cli``: ``python -m workers.localkafka ...``, the command line over ``LocalCluster``.
- ``devstack``: ``bin/up``'s whole local stack (Redis, this cluster, Daphne, Celery).

No Django here: only the standard library and confluent_kafka.
"""


class LocalClusterError(RuntimeError):
    """The local cluster could not do what was asked; the message says why and what to do."""
