"""`python3 -m edge.install [options]`: install the daemon from a checkout (stdlib only)."""

import sys

from edge.cli import main
from edge.install.service import INSTALL

if __name__ == "__main__":
    sys.exit(main(["install", *sys.argv[1:]], {"install": INSTALL}))
