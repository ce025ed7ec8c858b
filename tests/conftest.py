import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The program is run from the project root, as the Pulumi engine does.
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
