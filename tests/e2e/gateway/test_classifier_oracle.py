"""The `openclaw-2026.9` table against the real one: `classifySessionAttention` from the installed
`openclaw@2026.9.6` package, run by Node on the same inputs as ours — and, on each answer, its
active-abort rule (`isActiveAbortRecoveryEligible` with `resolveRunStaleThresholdMs`).

The functions are not exported by the package, so they are cut out of its dist (the attention
region of `src/logging/diagnostic-session-attention.ts`, and the two functions with the
constants they read), pure but for `Date.now()`, and run with `Date.now` fixed to the case's
clock. Every input of a grid over each argument's meaningful values must get exactly the
package's answer. The inputs no forwarded event carries (a tool's deadline, a model call's
request timeout, a backend's liveness deadline) are left out, as our snapshot has them.
"""

from __future__ import annotations

import itertools
import json
import subprocess

from app.classifier import (
    BLOCKED_TOOL_CALL_ABORT_FLOOR_MS,
    ActivitySnapshot,
    active_abort_eligible_2026_9,
    classify_session_attention_2026_9,
)
from tests.support.gateway_harness import Runtime

REGION = "//#region src/logging/diagnostic-session-attention.ts"
FUNCTIONS = ("isActiveAbortRecoveryEligible", "resolveRunStaleThresholdMs")
CONSTANTS = ("RUN_STALE_TAKEOVER_MS", "BLOCKED_TOOL_CALL_ABORT_FLOOR_MS")
STALE, ABORT, NOW = 30_000, 90_000, 1_800_000_000_000
TOOL_FLOOR = BLOCKED_TOOL_CALL_ABORT_FLOOR_MS  # a tool's abort waits for this, whatever the threshold

RUNNER = """
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map((c) => {
  Date.now = () => c.now;
  const classification = classifySessionAttention(c.params);
  const allowActiveAbort = isActiveAbortRecoveryEligible({
    classification, activity: c.params.activity, stuckSessionAbortMs: c.params.stuckSessionAbortMs });
  return { ...classification, allowActiveAbort };
});
process.stdout.write(JSON.stringify(out));
"""


def package_functions(runtime: Runtime) -> str:
    texts = [path.read_text(encoding="utf-8") for path in sorted((runtime.openclaw_pkg / "dist").glob("diagnostic-*.mjs"))]
    parts = []
    region = next((t for t in texts if REGION in t), None)
    assert region is not None, "classifySessionAttention not found in the package's dist"
    start = region.index(REGION)
    parts.append(region[start:region.index("//#endregion", start)])
    for name in CONSTANTS:
        parts.append(_cut(texts, f"const {name} = ", ";\n"))
    for name in FUNCTIONS:
        parts.append(_cut(texts, f"function {name}(", "\n}\n"))
    return "\n".join(parts)


def _cut(texts: list[str], opening: str, closing: str) -> str:
    """A top-level declaration of the bundle, from its opening to its closing text."""
    for text in texts:
        start = text.find(opening)
        if start >= 0:
            return text[start:text.index(closing, start) + len(closing)]
    raise AssertionError(f"{opening!r} not found in the package's dist")


def grid() -> list[dict]:
    ages = [None, 0, STALE, STALE + 1, ABORT - 1, ABORT, TOOL_FLOOR]
    cases = []
    for state, queue, kind, embedded, progress, tool, reason, repeated, deadline, owns in itertools.product(
        ["idle", "processing"], [0, 2], [None, "model_call", "tool_call", "embedded_run"], [None, True, False],
        ages, [None, STALE + 1, TOOL_FLOOR], [None, "run:completed", "tool:exec"], [None, ABORT], [None, NOW + 1],
        [False, True],
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
    activity = ActivitySnapshot(
        active_work_kind=a.get("activeWorkKind"), has_active_embedded_run=a.get("hasActiveEmbeddedRun"),
        last_progress_age_ms=a.get("lastProgressAgeMs"), active_tool_age_ms=a.get("activeToolAgeMs"),
        last_progress_reason=a.get("lastProgressReason"),
        repeated_request_no_progress_age_ms=a.get("repeatedRequestNoProgressAgeMs"),
        active_retry_wait_deadline_at_ms=a.get("activeRetryWaitDeadlineAtMs"),
    )
    result = classify_session_attention_2026_9(
        state=params["state"], queue_depth=params["queueDepth"], stale_ms=params["staleMs"],
        abort_ms=params["stuckSessionAbortMs"], now_ms=case["now"], runtime_owns_liveness=params["runtimeOwnsLiveness"],
        activity=activity,
    )
    answer = {"eventType": str(result.event_type), "reason": str(result.reason),
              "classification": str(result.classification), "recoveryEligible": result.recovery_eligible,
              "allowActiveAbort": active_abort_eligible_2026_9(result, activity, params["stuckSessionAbortMs"],
                                                               case["now"])}
    if result.active_work_kind is not None:
        answer["activeWorkKind"] = result.active_work_kind
    return answer


def test_every_input_gets_the_packages_answer(runtime: Runtime, tmp_path) -> None:
    script = tmp_path / "oracle.cjs"
    script.write_text(package_functions(runtime) + RUNNER, encoding="utf-8")
    cases = grid()
    done = subprocess.run([str(runtime.node), str(script)], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=120, check=True)
    theirs = json.loads(done.stdout)
    assert len(theirs) == len(cases) > 5_000
    wrong = [(case, answer, ours(case)) for case, answer in zip(cases, theirs) if ours(case) != answer]
    assert wrong == [], f"{len(wrong)} of {len(cases)} differ, e.g. {wrong[:3]}"
