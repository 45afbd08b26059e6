"""``python -m annt CONFIG``: the same as the ``annt`` command."""
import sys

from annt.cli import main

sys.exit(main())
