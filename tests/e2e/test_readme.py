"""The README's curl commands, run as a newcomer runs them: through ``bash``, against the real
gateway (dev mode, sample ERP), with the README's own ``export TOKEN=$(...)`` line. Only
``localhost:8080`` is replaced with the test gateway's address; every command must answer 2xx."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.gateway_process import GatewayProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
SECTIONS = ("Two commands", "Calling it", "Checkout: order intake")
#: ``curl`` as the newcomer's shell runs it, but failing on an HTTP error (``-f``) and saying why.
CURL_FAILS_ON_HTTP_ERRORS = 'curl() { command curl -f -S --max-time 20 "$@"; }'


def sh_blocks(markdown: str, section: str) -> list[str]:
    """The fenced ```sh blocks under the ``## section`` heading."""
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"README has no section {section!r}"
    return re.findall(r"^```sh\n(.*?)^```", match.group(1), re.M | re.S)


def commands(block: str) -> list[str]:
    """Logical lines of a block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [block for section in SECTIONS for block in sh_blocks(readme, section) if "curl" in block]
    return [command for block in blocks for command in commands(block)]


def test_the_readme_has_curl_commands_and_a_token_line() -> None:
    lines = readme_commands()
    assert any(line.startswith("export TOKEN=$(.venv/bin/erp-gateway token") for line in lines)
    assert sum(line.startswith("curl ") for line in lines) >= 10


def test_every_readme_curl_command_succeeds(gateway: GatewayProcess, auth_env: dict[str, str]) -> None:
    address = gateway.url.removeprefix("http://")
    env = {**os.environ, **auth_env}  # the gateway's dev key: tokens the README mints are trusted
    assignments: list[str] = []  # AUTH="...", as the reader's shell keeps them
    ran = 0
    for line in readme_commands():
        line = line.replace("localhost:8080", address)
        if line.startswith("export TOKEN="):
            minted = subprocess.run(
                ["bash", "-c", f'set -euo pipefail; {line}; printf %s "$TOKEN"'],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert minted.returncode == 0, minted.stderr
            assert minted.stdout.count(".") == 2, minted.stdout  # a JWT
            env["TOKEN"] = minted.stdout
            continue
        if not line.startswith("curl "):
            assignments.append(line)
            continue
        script = "\n".join(["set -euo pipefail", CURL_FAILS_ON_HTTP_ERRORS, *assignments, line])
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"README command failed ({done.returncode}): {line}\n{done.stderr}{done.stdout}"
        ran += 1
    assert ran >= 10
