"""``python -m workers.localkafka``: the local cluster's command line (``cli``)."""

import sys

from workers.localkafka.cli import main

sys.exit(main())
