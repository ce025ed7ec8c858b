import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The program is run from the project root, as the Pulumi engine does.
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

# Under the README's test command (scripts/test sets this), a test skipped because a
# tool "is not installed" fails instead: set-up must install everything tests need,
# and a green run must not hide a missing install step.
STRICT_TOOLS = os.environ.get("GIN_DEPLOY_STRICT_TOOLS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if STRICT_TOOLS and report.skipped and call.excinfo is not None \
            and "not installed" in str(call.excinfo.value):
        report.outcome = "failed"
        report.longrepr = (f"required tool missing: {call.excinfo.value} "
                           "(scripts/setup.sh must install it)")
