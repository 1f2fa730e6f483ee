"""Run the emulator: ``python -m pictify_tasks.testing.emulator --help``."""

import sys

from pictify_tasks.testing.emulator.cli import main

sys.exit(main())
