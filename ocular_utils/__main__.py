"""``python -m ocular_utils`` is ``ocular-study`` (also under ``torchrun ... -m ocular_utils train``)."""
import sys

from .runner.cli import main

sys.exit(main())
