"""ensure_venv.sh, which the README's two commands source: it must leave the shell as it found it."""
import hashlib
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_sourcing_the_environment_script_keeps_error_messages():
    """An `exec 9>&- 2>/dev/null` once sent the rest of run_demo.sh's stderr (every error line) to /dev/null."""
    stamp = REPO / ".venv" / ".requirements.sha256"
    want = hashlib.sha256((REPO / "requirements.txt").read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text().strip() != want:
        pytest.skip("no .venv made from requirements.txt here: sourcing the script would set one up")
    done = subprocess.run(["bash", "-c", "set -euo pipefail; . ./ensure_venv.sh; echo still-heard >&2"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "still-heard" in done.stderr, done
