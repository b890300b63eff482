import sys
from pathlib import Path

# tests import their helpers (storekit, llm_server) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "traces"
