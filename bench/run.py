#!/usr/bin/env python3
"""What a per-connection qpsmtpd-stdio costs, measured side by side with its comparisons in one run.

    python3 bench/run.py            # full run (several minutes; needs ~4 GB of free disk for 1 GiB messages)
    python3 bench/run.py --quick    # proves the benchmark works (well under a minute; used by CI)

Writes bench/results/results.md (the table), results.json (every sample),
plot.png, and the profiles (importtime-*.txt, cprofile-*.txt). See bench/README.md.

The parts: common.py (settings, helpers), prepare.py (venv, configs, DNS
server), client.py (the SMTP clients), measure.py (the measurements),
report.py (targets, results.md, plot). Only the standard library and the
project's own reply parser are used here; the plot is drawn by bench/plot.py
with matplotlib (from this interpreter when it has it, else from a small
venv at bench/.venv-plot that this script makes).
"""


from __future__ import annotations

import argparse
import sys

from common import HERE
from measure import Bench

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repetitions, small messages, no 1 GiB: proves it works")
    ap.add_argument("--out", default=str(HERE / "results"), help="where results.md, plot.png... go (default bench/results)")
    ap.add_argument("--work", default=None, help="parent of the scratch dir (default: the system temp dir)")
    ap.add_argument("--venv", default=None, help="the clean venv to (re)use (default bench/.venv)")
    ap.add_argument("--python", default=None, help="interpreter the venv is made from (default python3 on PATH)")
    ap.add_argument("--install", choices=("auto", "wheel", "editable", "checkout"), default="auto",
                    help="wheel: pip install . (non-editable); editable: pip install -e .; checkout: venv python runs "
                         "bin/in.qpsmtpd from the checkout; auto: wheel if pyproject.toml exists, else checkout")
    ap.add_argument("--reps", type=int, default=0, help="session latency repetitions (default 20, quick 3)")
    ap.add_argument("--no-1g", action="store_true", help="skip the 1 GiB message")
    ap.add_argument("--sizes", default="", help="message sizes in MiB for (2)-(3), comma-separated (default 1,100,1024; quick 1,10)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--skip", action="append", default=[], choices=("latency", "mx", "plugins", "messages", "shapes", "xinetd", "daemons", "profiles"))
    ap.add_argument("--sets", default="", help="session-latency rows to measure, comma-separated from a,b,c,d,e "
                    "(default all; c also measures (b) with one recipient, its baseline)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch dir (configs, logs, maildirs)")
    opts = ap.parse_args(argv)
    return Bench(opts).run()


if __name__ == "__main__":
    sys.exit(main())
