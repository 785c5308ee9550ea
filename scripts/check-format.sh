#!/usr/bin/env bash
# Checks that the C++ lines a change touched are formatted by .clang-format (clang-format
# and git-clang-format from Debian's clang-format package, which scripts/deps.sh installs).
# Only changed lines: code nobody touched is not reformatted behind a reviewer's back.
#
#   ./scripts/check-format.sh          the lines changed since the base (below)
#   ./scripts/check-format.sh BASE     the lines changed between BASE and HEAD
#
# The base, when not given (first match):
#   1. $SIRENA_FORMAT_BASE (CI can name the branch a change targets);
#   2. on a branch: where it left main (git merge-base HEAD main, or origin/main), so the
#      whole branch is checked;
#   3. on main itself: HEAD's first parent, so the last commit (or the branch a merge
#      commit brought in) is checked.
# Committed content is compared (BASE..HEAD), not the work tree. Exits 1 and prints the
# diff clang-format wants; exits 0, with a note, when there is no base to compare with
# (not a git checkout, or a shallow clone without HEAD's parent).
set -euo pipefail
cd "$(dirname "$0")/.."

extensions=c,cc,cpp,h,hh,hpp

if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "check-format: not a git checkout, nothing to compare with; skipped" >&2
  exit 0
fi
for tool in clang-format git-clang-format; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check-format: $tool is missing (./scripts/deps.sh installs the clang-format package)" >&2
    exit 2
  fi
done

base=${1:-${SIRENA_FORMAT_BASE:-}}
if [ -z "$base" ]; then
  head=$(git rev-parse HEAD)
  for main in main origin/main; do
    if mb=$(git merge-base HEAD "$main" 2>/dev/null) && [ "$mb" != "$head" ]; then
      base=$mb
      break
    fi
  done
  if [ -z "$base" ]; then
    base=HEAD^1
  fi
fi
if ! base_commit=$(git rev-parse --verify --quiet "$base^{commit}"); then
  echo "check-format: no commit '$base' here (a shallow clone?); set SIRENA_FORMAT_BASE or fetch more history; skipped" >&2
  exit 0
fi

# git-clang-format 14 exits 0 whether or not it found something, so read what it prints:
# a diff, or a one-line note ("no modified files to format", "clang-format did not modify
# any files").
out=$(git clang-format --binary "$(command -v clang-format)" --extensions "$extensions" --diff "$base_commit" HEAD)
if grep -q '^diff --git' <<<"$out"; then
  echo "check-format: lines changed since $(git rev-parse --short "$base_commit") are not clang-format clean." >&2
  echo "Fix them with: git clang-format $(git rev-parse --short "$base_commit")  (then commit)" >&2
  printf '%s\n' "$out"
  exit 1
fi
echo "check-format: lines changed since $(git rev-parse --short "$base_commit") are clang-format clean" >&2
