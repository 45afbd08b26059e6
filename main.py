#!/usr/bin/env python3
"""``python main.py CONFIG.yaml [--set key=value ...] [--check] [--resume RUN_DIR]`` (see README)."""
import sys

from annt.cli import main

if __name__ == "__main__":
    sys.exit(main())
