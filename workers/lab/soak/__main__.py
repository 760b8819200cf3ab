"""The soak: sentinels hosted by two Celery workers, a schedule of faults for many minutes,
ground truth kept apart, every promise judged.

    python -m workers.lab.soak --minutes 30 [--seed N] [--report DIR] [--faults a,b,...]
        [--hosting shared|own]

It starts a Redis of its own (persisting, as ``bin/up`` starts one), six sentinels on the
local cluster (the settings' bootstrap servers: ``KAFKA_BOOTSTRAP_SERVERS``, with
``LOCAL_KAFKA_NAME`` / ``LOCAL_KAFKA_PORT`` naming the ``LocalCluster`` the broker faults hit)
hosted by two real Celery workers (``workers.lab.soak.procs``) as production hosts them (in
each worker's shared host; ``--hosting own``: a process each), and runs the seeded fault
plan (``workers.lab.soak.faults``) with quiet periods between. Meanwhile it samples every
status document and process (``workers.lab.soak.watch``) and taps the raw acks and ledger
streams (``workers.lab.soak.truth``). At the end the producers stop, the checkers settle, every
topic is read to its end, and each sentinel is judged; the report is a JSON file and an HTML
page (``workers.lab.soak.report``). The exit status is 0 when every judged check passed.

Built on the scenario lab: a ``Lab`` gives the broker faults it can undo, the waits, the lock
(one soak or scenario per Redis) and the cleanup; ``Probe``s are the sentinels.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import time
from pathlib import Path

from workers.lab.soak.faults import kinds_for
from workers.lab.soak.procs import HOSTINGS, OWN, SHARED
from workers.lab.soak.run import Soak, report_dir_for
from workers.localkafka.address import bootstrap_servers, local_address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.lab.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn and printed")
    parser.add_argument("--report", type=Path, default=None, help="default: .local/soak/<time>")
    parser.add_argument("--hosting", choices=HOSTINGS, default=SHARED)
    parser.add_argument(
        "--faults",
        default=None,
        help=f"default: every fault of the hosting: shared {', '.join(kinds_for(SHARED))}; "
        f"own {', '.join(kinds_for(OWN))}",
    )
    parser.add_argument("--quiet", default="45,90", help="quiet period range, seconds: MIN,MAX")
    parser.add_argument("--redis-port", type=int, default=27100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    applicable = kinds_for(args.hosting)
    if args.faults is None:
        kinds = applicable
    else:
        kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = [k for k in kinds if k not in applicable]
    if unknown or not kinds:
        parser.error(
            f"fault(s) {unknown} do not apply to {args.hosting} hosting; "
            f"choose from {', '.join(applicable)}"
        )
    try:
        lo, hi = (float(x) for x in args.quiet.split(","))
    except ValueError:
        parser.error("--quiet takes MIN,MAX in seconds, e.g. 45,90")
    if args.minutes < 2:
        parser.error("--minutes must be at least 2")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    report_dir = args.report or report_dir_for(time.strftime("%Y%m%d-%H%M%S"))
    soak = Soak(
        minutes=args.minutes,
        seed=seed,
        report_dir=report_dir,
        bootstrap_servers=bootstrap_servers(),
        local=local_address().cluster(),
        redis_port=args.redis_port,
        hosting=args.hosting,
        kinds=kinds,
        quiet=(lo, hi),
    )
    report = soak.run()
    failed = [c for c in report.get("checks", []) if not c["ok"]]
    print(
        json.dumps(
            {
                "seed": seed,
                "passed": report.get("passed"),
                "report": str(report_dir),
                "failed": failed[:20],
            },
            indent=1,
            default=str,
        )
    )
    return 0 if report.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
