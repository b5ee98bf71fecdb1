"""``make audit``: pip-audit of what MWAA installs, and a loud "not audited" when it cannot run.

Usage: ``python scripts/pip_audit.py requirements.txt [-s pypi|osv] [--no-probe]``.

Exit status: 0 audited, no known vulnerability; 1 audited, vulnerabilities found (each printed);
2 bad input; 3 not audited — the vulnerability service, the package index or the constraints
file could not be reached, and the reason is printed as ``not audited: <reason>``. A run that
could not audit never passes.

What is audited, and why this way. requirements.txt pins two packages and carries MWAA's
``--constraint`` line; MWAA installs those two plus everything they pull in (Airflow and ~150
more), at the versions the constraints file pins. pip-audit is run with ``-r requirements.txt
--strict`` in its resolving mode, constraint line kept: pip-audit installs the file into a
throwaway virtualenv with pip, and pip honours ``--constraint`` inside a requirements file, so
the audited set is the set MWAA installs. The alternatives audit something else:

- ``--no-deps`` (with or without ``--disable-pip``) audits only the lines as written: the parser
  skips the ``--constraint`` option, so the two direct pins are audited and none of the
  transitive packages, where most of the code is;
- stripping the constraint line and resolving audits whatever versions are newest today, not
  the ones MWAA installs.

The resolution runs on this interpreter (Python 3.11) while MWAA runs 3.12: the constraints
file decides the versions either way; only packages behind a Python-version marker can differ.
``--strict`` makes a dependency the service cannot answer for fail the run instead of being
skipped. Before that, a probe asks the vulnerability service about one pinned package and
fetches the constraints file, so an unreachable service is reported in seconds, with the URL,
rather than after a dependency install.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

EXIT_CLEAN = 0
EXIT_VULNERABLE = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_AUDITED = 3
PYPI_JSON_API = "https://pypi.org/pypi"
OSV_QUERY_API = "https://api.osv.dev/v1/query"
# pip marks the one-line summary of a failure with a multiplication sign.
_PIP_MARK = "\u00d7"
_CONSTRAINT = re.compile(r'^(?:--constraint|-c)[=\s]+"?([^"\s]+)"?\s*$')


class NotAudited(RuntimeError):
    """The audit could not run; the message says why (shown as ``not audited: …``)."""


class HttpRefusal(NotAudited):
    """The service was reached but answered with an HTTP error."""


class BadInput(ValueError):
    """The requirements file is not one this script audits; the message names the line."""


def read_requirements(path: Path) -> tuple[list[Requirement], list[str]]:
    """``(pinned requirements, constraint URLs)`` of a requirements file."""
    if not path.is_file():
        raise BadInput(f"{path}: no such requirements file")
    requirements, constraints = [], []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            match = _CONSTRAINT.match(line)
            if match:
                constraints.append(match.group(1))
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise BadInput(f"{path}:{number}: {line!r} is not a requirement: {error}") from None
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if not pins:
            raise BadInput(f"{path}:{number}: {line!r} is not pinned with ==")
        requirements.append(requirement)
    if not requirements:
        raise BadInput(f"{path}: no requirement to audit")
    return requirements, constraints


def _fetch(request: urllib.request.Request | str, what: str, timeout_s: float) -> bytes:
    """GET/POST ``request``; any failure becomes :class:`NotAudited` naming ``what``."""
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.read()
    except urllib.error.HTTPError as error:
        raise HttpRefusal(f"{what} answered HTTP {error.code} at {url}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise NotAudited(f"cannot reach {what} at {url}: {reason}") from None


def probe_service(service: str, requirement: Requirement, timeout_s: float) -> None:
    """Ask the vulnerability service about one pinned package, as pip-audit will."""
    name = canonicalize_name(requirement.name)
    version = next(spec.version for spec in requirement.specifier if spec.operator == "==")
    if service == "osv":
        body = json.dumps({"package": {"name": name, "ecosystem": "PyPI"}, "version": version})
        request = urllib.request.Request(
            OSV_QUERY_API, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        answer = _fetch(request, "the OSV vulnerability API", timeout_s)
    else:
        url = f"{PYPI_JSON_API}/{name}/{version}/json"
        try:
            answer = _fetch(url, "PyPI's vulnerability API", timeout_s)
        except HttpRefusal as error:
            raise NotAudited(
                f"{error} (the release {name}=={version} that requirements.txt pins: an index "
                "without PyPI's JSON API, such as a mirror, cannot answer)"
            ) from None
    try:
        json.loads(answer)
    except ValueError:
        raise NotAudited(f"the {service} vulnerability service did not answer JSON") from None


def _failure_reason(result: subprocess.CompletedProcess) -> str:
    """The most specific line of a failed pip-audit run: pip's own error, else pip-audit's."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    candidates = (
        [line.lstrip(_PIP_MARK).strip() for line in lines if line.startswith(_PIP_MARK)],
        [line for line in lines if line.startswith("ERROR: ")],  # pip's plain errors
        [line.split(":", 2)[-1].strip() for line in lines if line.startswith("ERROR:")],
        lines,
    )
    return next((found[-1] for found in candidates if found), f"exit {result.returncode}")


def run_pip_audit(
    requirements_file: Path, service: str, timeout_s: float, limit_s: int
) -> tuple[int, list[dict]]:
    """pip-audit ``--strict`` in resolving mode; ``(exit status, vulnerable dependencies)``."""
    with tempfile.TemporaryDirectory(prefix="headrace-audit-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip_audit", "-r", str(requirements_file.resolve()), "--strict",
            "-s", service, "--timeout", str(int(timeout_s)), "-f", "json", "-o", str(report),
            "--desc", "on", "--progress-spinner", "off",
        ]  # fmt: skip
        # pip inside pip-audit's throwaway virtualenv: fail fast rather than retry for minutes.
        env = {**os.environ, "PIP_DEFAULT_TIMEOUT": str(int(timeout_s)), "PIP_RETRIES": "1"}
        try:
            # cwd: away from scripts/, whose pip_audit.py would shadow pip-audit's own module.
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=limit_s, env=env, cwd=tmp
            )
        except subprocess.TimeoutExpired:
            raise NotAudited(f"pip-audit did not finish within {limit_s} s") from None
        audited = json.loads(report.read_text()) if report.is_file() else None
    if audited is None:
        if result.returncode == 0:
            raise NotAudited("pip-audit exited 0 without writing its report")
        raise NotAudited(f"pip-audit failed: {_failure_reason(result)}")
    dependencies = audited.get("dependencies", [])
    skipped = [dep for dep in dependencies if "skip_reason" in dep]
    if skipped:
        raise NotAudited(f"pip-audit skipped {skipped[0]['name']}: {skipped[0]['skip_reason']}")
    vulnerable = [dep for dep in dependencies if dep.get("vulns")]
    if result.returncode != 0 and not vulnerable:
        raise NotAudited(f"pip-audit exited {result.returncode}: {result.stderr.strip()[-500:]}")
    print(f"audited {len(dependencies)} packages with the {service} service")
    return (EXIT_VULNERABLE if vulnerable else EXIT_CLEAN), vulnerable


def audit(
    requirements_file: Path,
    *,
    service: str = "pypi",
    timeout_s: float = 15,
    limit_s: int = 1200,
    probe: bool = True,
) -> int:
    """Run the audit and print its outcome; returns the exit status."""
    try:
        requirements, constraints = read_requirements(requirements_file)
        if probe:
            probe_service(service, requirements[0], timeout_s)
            for url in constraints:
                _fetch(url, "the constraints file that pins what MWAA installs", timeout_s)
        status, vulnerable = run_pip_audit(requirements_file, service, timeout_s, limit_s)
    except BadInput as error:
        print(f"bad input: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NotAudited as error:
        print(f"not audited: {error}")
        return EXIT_NOT_AUDITED
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fix released"
            print(
                f"VULNERABLE {dependency['name']}=={dependency['version']}: {vuln['id']} "
                f"(fixed in: {fixed}) {vuln.get('description', '')[:200]}"
            )
    if status == EXIT_CLEAN:
        print("no known vulnerabilities")
    else:
        print(f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", type=Path, help="e.g. requirements.txt")
    parser.add_argument("-s", "--vulnerability-service", choices=("pypi", "osv"), default="pypi")
    parser.add_argument("--timeout", type=float, default=15, help="seconds per network request")
    parser.add_argument("--limit", type=int, default=1200, help="seconds pip-audit may take in all")
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the quick reachability probe; pip-audit's own errors then give the reason",
    )
    args = parser.parse_args(argv)
    return audit(
        args.requirements,
        service=args.vulnerability_service,
        timeout_s=args.timeout,
        limit_s=args.limit,
        probe=not args.no_probe,
    )


if __name__ == "__main__":
    sys.exit(main())
