"""`python -m taskdecomp.app [--dataset ...] [--port ...]`: the same as `taskdecomp-app`."""

import sys

from taskdecomp.app.cli import main

if __name__ == "__main__":
    sys.exit(main(None))
