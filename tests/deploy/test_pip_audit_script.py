"""``make audit``: pip-audit --strict of requirements.txt, and never a silent pass.

Whether the vulnerability service answers depends on the machine; the first test accepts either
outcome but asserts what each must look like. The others make the service unreachable on
purpose (a proxy on 127.0.0.1:9, where nothing listens) and need no network.
"""

from __future__ import annotations

import os
import re

import pytest
from mwaa_deploy_helpers import run_script

# Slow (runs pip-audit): left out of `make test-fast`.
pytestmark = pytest.mark.slow

EXIT_CLEAN, EXIT_VULNERABLE, EXIT_BAD_INPUT, EXIT_NOT_AUDITED = 0, 1, 2, 3


def _unreachable_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = "http://127.0.0.1:9"
    return env


def test_audit_of_requirements_txt_reports_its_outcome():
    result = run_script("pip_audit.py", "requirements.txt", timeout=1500)
    out = result.stdout
    if result.returncode == EXIT_NOT_AUDITED:
        reason = re.fullmatch(r"not audited: (.+)\n", out)
        assert reason and len(reason.group(1)) > 20, out
    elif result.returncode == EXIT_CLEAN:
        audited = re.search(r"^audited (\d+) packages with the pypi service$", out, re.MULTILINE)
        # Resolved under the constraint line: Airflow and its dependencies, not just two pins.
        assert audited and int(audited.group(1)) > 50, out
        assert out.rstrip().endswith("no known vulnerabilities")
    else:
        assert result.returncode == EXIT_VULNERABLE, (result.returncode, out, result.stderr)
        assert re.search(r"^VULNERABLE \S+==\S+: \S+ \(fixed in: ", out, re.MULTILINE), out


@pytest.mark.parametrize(
    ("service", "url"),
    [
        ("pypi", "https://pypi.org/pypi/apache-airflow-providers-amazon/9.34.0/json"),
        ("osv", "https://api.osv.dev/v1/query"),
    ],
)
def test_an_unreachable_service_is_not_audited(service, url):
    result = run_script(
        "pip_audit.py", "requirements.txt", "-s", service, env=_unreachable_env(), timeout=120
    )
    assert result.returncode == EXIT_NOT_AUDITED
    assert result.stdout.startswith("not audited: cannot reach ")
    assert url in result.stdout
    assert "Connection refused" in result.stdout


def test_pip_audits_own_failure_is_not_audited_either():
    """Without the probe, pip-audit itself meets the unreachable network: still no pass."""
    result = run_script(
        "pip_audit.py", "requirements.txt", "--no-probe", "--timeout", "5",
        env=_unreachable_env(), timeout=600,
    )  # fmt: skip
    assert result.returncode == EXIT_NOT_AUDITED, (result.stdout, result.stderr)
    assert result.stdout.startswith("not audited: pip-audit failed: ")


def test_bad_input_is_named(tmp_path):
    missing = run_script("pip_audit.py", str(tmp_path / "nope.txt"))
    assert missing.returncode == EXIT_BAD_INPUT
    assert "nope.txt: no such requirements file" in missing.stderr
    unpinned = tmp_path / "requirements.txt"
    unpinned.write_text("pyyaml==6.0.2\nboto3>=1.37\n")
    result = run_script("pip_audit.py", str(unpinned))
    assert result.returncode == EXIT_BAD_INPUT
    assert "requirements.txt:2: 'boto3>=1.37' is not pinned with ==" in result.stderr
