"""bench/run.py's scan and memory parts at a tiny size: output format and figure names only.

No timing is asserted: the figures are the bench's to print, not the tests' to judge.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.paths import REPO

ROOT = REPO
LINE = re.compile(r"^([a-z0-9_]+) (-?[0-9]+(?:\.[0-9]+)?) (\S+)$")
EXPECTED = {
    "scan_100k_cpu_s": "s",
    "scan_1m_cpu_s": "s",
    "scan_max_stall_ms": "ms",
    "scan_baseline_100k_cpu_s": "s",
    "bytes_per_session": "B",
    "bytes_per_active_session": "B",
    "bytes_per_dict_entry": "B",
}


def test_scan_and_memory_parts_print_only_figure_lines() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--parts", "scan,memory",
         "--scan-candidates", "1000", "--scan-tracked", "3000", "--memory-sessions", "1000"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    figures = {}
    for line in lines:
        match = LINE.match(line)
        assert match, f"not a `name value unit` line: {line!r}"
        name, value, unit = match.groups()
        assert name not in figures, f"{name} printed twice"
        figures[name] = (float(value), unit)
    assert set(figures) == set(EXPECTED)
    for name, unit in EXPECTED.items():
        value, printed_unit = figures[name]
        assert printed_unit == unit, name
        assert value >= 0, name
    assert figures["bytes_per_session"][0] > 0
    assert figures["bytes_per_dict_entry"][0] > 0


def test_bench_help_names_every_part() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--help"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0
    for option in ("--quick", "--parts", "--scan-candidates", "--scan-tracked", "--memory-sessions"):
        assert option in result.stdout
