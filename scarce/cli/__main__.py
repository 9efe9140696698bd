"""``python -m scarce.cli ...``: the same command line as ``scarce ...``."""
import sys

from scarce.cli import main

if __name__ == "__main__":
    sys.exit(main())
