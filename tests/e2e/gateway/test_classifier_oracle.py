"""The `openclaw-2026.9` table against the real one: `classifySessionAttention` from the installed
`openclaw@2026.9.6` package, run by Node on the same inputs as ours.

The function is not exported by the package, so its region of the dist
(`src/logging/diagnostic-session-attention.ts`, pure but for `Date.now()`) is cut out of the file
and run with `Date.now` fixed to the case's clock. Every input of a grid over each argument's
meaningful values must get exactly the package's answer.
"""

from __future__ import annotations

import itertools
import json
import subprocess

from app.classifier import ActivitySnapshot, classify_session_attention_2026_9
from tests.support.gateway_harness import Runtime

REGION = "//#region src/logging/diagnostic-session-attention.ts"
STALE, ABORT, NOW = 30_000, 90_000, 1_800_000_000_000

RUNNER = """
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map((c) => { Date.now = () => c.now; return classifySessionAttention(c.params); });
process.stdout.write(JSON.stringify(out));
"""


def package_function(runtime: Runtime) -> str:
    for path in sorted((runtime.openclaw_pkg / "dist").glob("diagnostic-*.mjs")):
        text = path.read_text(encoding="utf-8")
        start = text.find(REGION)
        if start >= 0:
            end = text.index("//#endregion", start)
            return text[start:end]
    raise AssertionError("classifySessionAttention not found in the package's dist")


def grid() -> list[dict]:
    ages = [None, 0, STALE, STALE + 1, ABORT - 1, ABORT]
    cases = []
    for state, queue, kind, embedded, progress, tool, reason, repeated, deadline, owns in itertools.product(
        ["idle", "processing"], [0, 2], [None, "model_call", "tool_call", "embedded_run"], [None, True, False],
        ages, [None, STALE + 1], [None, "run:completed", "tool:exec"], [None, ABORT], [None, NOW + 1], [False, True],
    ):
        if owns and (repeated or deadline):
            continue  # owns-liveness wins before either matters: a few cases of it are enough
        activity = {"activeWorkKind": kind, "hasActiveEmbeddedRun": embedded, "lastProgressAgeMs": progress,
                    "activeToolAgeMs": tool, "lastProgressReason": reason,
                    "repeatedRequestNoProgressAgeMs": repeated, "activeRetryWaitDeadlineAtMs": deadline}
        cases.append({"now": NOW, "params": {
            "state": state, "queueDepth": queue, "staleMs": STALE, "stuckSessionAbortMs": ABORT,
            "runtimeOwnsLiveness": owns, "activity": {k: v for k, v in activity.items() if v is not None}}})
    return cases


def ours(case: dict) -> dict:
    params, a = case["params"], case["params"]["activity"]
    result = classify_session_attention_2026_9(
        state=params["state"], queue_depth=params["queueDepth"], stale_ms=params["staleMs"],
        abort_ms=params["stuckSessionAbortMs"], now_ms=case["now"], runtime_owns_liveness=params["runtimeOwnsLiveness"],
        activity=ActivitySnapshot(
            active_work_kind=a.get("activeWorkKind"), has_active_embedded_run=a.get("hasActiveEmbeddedRun"),
            last_progress_age_ms=a.get("lastProgressAgeMs"), active_tool_age_ms=a.get("activeToolAgeMs"),
            last_progress_reason=a.get("lastProgressReason"),
            repeated_request_no_progress_age_ms=a.get("repeatedRequestNoProgressAgeMs"),
            active_retry_wait_deadline_at_ms=a.get("activeRetryWaitDeadlineAtMs"),
        ),
    )
    answer = {"eventType": str(result.event_type), "reason": str(result.reason),
              "classification": str(result.classification), "recoveryEligible": result.recovery_eligible}
    if result.active_work_kind is not None:
        answer["activeWorkKind"] = result.active_work_kind
    return answer


def test_every_input_gets_the_packages_answer(runtime: Runtime, tmp_path) -> None:
    script = tmp_path / "oracle.cjs"
    script.write_text(package_function(runtime) + RUNNER, encoding="utf-8")
    cases = grid()
    done = subprocess.run([str(runtime.node), str(script)], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=120, check=True)
    theirs = json.loads(done.stdout)
    assert len(theirs) == len(cases) > 5_000
    wrong = [(case, answer, ours(case)) for case, answer in zip(cases, theirs) if ours(case) != answer]
    assert wrong == [], f"{len(wrong)} of {len(cases)} differ, e.g. {wrong[:3]}"
