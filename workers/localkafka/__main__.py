"""``python -m workers.localkafka``: the local cluster's command line."""

import sys

from workers.localkafka.cluster import main

sys.exit(main())
