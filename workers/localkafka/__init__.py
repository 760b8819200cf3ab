"""The local three-node Apache Kafka cluster (KRaft, combined broker + controller nodes).

- ``jars``: Kafka as plain jars from Maven Central (``docker/kafka/pom.xml``, fetched once into
  ``.local/kafka/libs``), and the ``java`` that runs them.
- ``node``: one node: its directory, ``server.properties``, process and pid file.
- ``cluster``: ``LocalCluster``, the nodes together: start, stop, status, topics, waits.
- ``storage``: the cluster id and formatting the nodes' storage before their first start.
- ``admin``: the admin clients ``LocalCluster`` asks through, and resending after transient errors.
- ``address``: where the local cluster is (``LOCAL_KAFKA_NAME``, ``LOCAL_KAFKA_PORT``,
  ``KAFKA_BOOTSTRAP_SERVERS``), read here and nowhere else.
- ``cli``: ``python -m workers.localkafka ...``, the command line over ``LocalCluster``.
- ``devstack``: ``bin/up``'s whole local stack (Redis, this cluster, Daphne, Celery).

No Django here: only the standard library and confluent_kafka.
"""


class LocalClusterError(RuntimeError):
    """The local cluster could not do what was asked; the message says why and what to do."""
