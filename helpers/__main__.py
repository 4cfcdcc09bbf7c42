"""`python -m helpers`: run the course notebooks with papermill (see helpers/runs.py for the options)."""

import sys

from .runs import main

sys.exit(main())
