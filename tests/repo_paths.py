"""The checkout's root, defined once for every test and helper module (tests/ is on sys.path)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
