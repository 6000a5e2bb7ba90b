"""Every test, and every `python -m sigtrace` a test starts, runs the source tree, not the
copy scripts/setup installed into .venv."""

import os
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
