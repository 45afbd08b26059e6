import sys

from annt.cli import main

sys.exit(main())
