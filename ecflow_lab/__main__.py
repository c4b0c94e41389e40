"""``python -m ecflow_lab`` is ``ecflow-lab``."""

import sys

from ecflow_lab.cli import main

sys.exit(main())
