"""tests/fixtures must equal the project's shared fixtures folder (../shared/fixtures beside a developer's
checkout and beside CI's clone), so the copy the tests read never drifts from the source it was taken from.

Every file of the shared folder (except README.md: the repository's copy has its own provenance notes) must exist
in tests/fixtures with the same bytes. Files only in tests/fixtures are failures too (a fixture dropped upstream).
When no shared folder is there (a user's plain clone), there is nothing to compare: the test says so and passes.
TD_SHARED_FIXTURES overrides where the shared folder is looked for. scripts/sync-fixtures.sh copies what is new."""
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ROOT = os.environ.get("TD_SRC", os.path.join(HERE, "..", ".."))
REPO_COPY = os.path.join(SRC_ROOT, "tests", "fixtures")
SHARED = os.environ.get("TD_SHARED_FIXTURES", os.path.join(SRC_ROOT, "..", "shared", "fixtures"))


def digests(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            rel = os.path.relpath(path, root)
            if rel == "README.md":
                continue
            with open(path, "rb") as fh:
                out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


def main():
    if not os.path.isdir(REPO_COPY):
        print(f"FAIL: {REPO_COPY} is missing")
        print("0 passed, 1 failed")
        return 1
    if not os.path.isdir(SHARED):
        print(f"no shared fixtures folder at {SHARED}: nothing to compare (a plain clone)")
        print("1 passed, 0 failed")
        return 0
    shared, repo = digests(SHARED), digests(REPO_COPY)
    passed = failed = 0
    for rel in sorted(shared):
        if rel not in repo:
            print(f"FAIL: missing in tests/fixtures: {rel}")
            failed += 1
        elif repo[rel] != shared[rel]:
            print(f"FAIL: differs from the shared copy: {rel}")
            failed += 1
        else:
            passed += 1
    for rel in sorted(set(repo) - set(shared)):
        print(f"FAIL: only in tests/fixtures, not in {SHARED}: {rel}")
        failed += 1
    if failed:
        print("run scripts/sync-fixtures.sh to copy what is new")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
