"""`python -m fsqueue`: the same as `fsq`, for clusters where console scripts are not on PATH."""

import sys

from fsqueue.cli import main

sys.exit(main())
