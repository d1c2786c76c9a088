"""Print constraints.txt: the installed versions of openclaw-diagnostics[test] and all it depends on.

Refresh the pins on purpose: `pip install -U -e '.[test]'` (no -c), run the whole suite, then
`python scripts/freeze_constraints.py > constraints.txt` and commit both together.
"""
import re
from importlib.metadata import distribution, PackageNotFoundError
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
seen = {}
def walk(name, extras):
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return
    key = canonicalize_name(dist.metadata["Name"])
    new_extras = set(extras) - seen.get(key, (None, set()))[1]
    if key in seen and not new_extras:
        return
    seen[key] = (dist.version, seen.get(key, (None, set()))[1] | set(extras))
    for raw in dist.requires or []:
        req = Requirement(raw)
        if req.marker is not None:
            envs = [{"extra": e} for e in (extras or [""])] 
            if not any(req.marker.evaluate(env) for env in envs):
                continue
        walk(req.name, req.extras)
walk("openclaw-diagnostics", {"test"})
print("# The versions the suite was last run with: `pip install -c constraints.txt ...` installs exactly these.")
print("# Regenerate with scripts/freeze_constraints.py (its docstring says when and how).")
for key, (version, _) in sorted(seen.items()):
    if key != "openclaw-diagnostics":
        print(f"{key}=={version}")
