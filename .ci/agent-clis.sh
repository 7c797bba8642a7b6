#!/usr/bin/env bash
# Install the real agent CLIs the end-to-end tier runs (tests/e2e/), pinned, from
# the npm registry, into a project-local prefix: .e2e/ at the repository root
# (override with AGENT_CLIS_PREFIX). Idempotent: a second run with everything in
# place only reads four package.json files and returns.
#
#   .ci/agent-clis.sh            install (or check) all four
#   .ci/agent-clis.sh --print    print the bin folder to put on PATH
#
# The binaries end up in "$prefix/node_modules/.bin": claude, codex, opencode, gemini.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${AGENT_CLIS_PREFIX:-$PWD/.e2e}"
BIN="$PREFIX/node_modules/.bin"

# package@version, one per CLI. Bump together with tests/fixtures/agent-output/.
PACKAGES=(
  "@anthropic-ai/claude-code@2.1.330"
  "@openai/codex@0.169.0"
  "opencode-ai@1.18.33"
  "@google/gemini-cli@0.61.0"
)
BINARIES=(claude codex opencode gemini)

if [ "${1:-}" = "--print" ]; then
  echo "$BIN"
  exit 0
fi

installed_version() {  # $1: package name -> its installed version, or nothing
  local pj="$PREFIX/node_modules/$1/package.json"
  [ -f "$pj" ] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
}

missing=()
for spec in "${PACKAGES[@]}"; do
  name="${spec%@*}"
  want="${spec##*@}"
  have="$(installed_version "$name")"
  if [ "$have" != "$want" ]; then
    missing+=("$spec")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  for b in "${BINARIES[@]}"; do
    [ -x "$BIN/$b" ] || { missing=("${PACKAGES[@]}"); break; }
  done
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "agent-clis: ${BINARIES[*]} already installed in $BIN"
  exit 0
fi

command -v npm >/dev/null || { echo "agent-clis: npm is needed (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$PREFIX"
[ -f "$PREFIX/package.json" ] || echo '{"name":"orchestrate-e2e-clis","private":true}' > "$PREFIX/package.json"
echo "agent-clis: installing ${missing[*]} into $PREFIX"
# --include=optional: Claude Code and Codex ship their native binary as an
# optional dependency per platform; without it they install but cannot start.
npm install --prefix "$PREFIX" --no-audit --no-fund --no-save --include=optional \
  --loglevel=error "${PACKAGES[@]}"

# Smoke-check each binary in a throw-away home: `--version` alone creates config folders.
check_home="$PREFIX/.check-home"
mkdir -p "$check_home"
export HOME="$check_home" CODEX_HOME="$check_home/.codex" XDG_CONFIG_HOME="$check_home/.config" \
  XDG_DATA_HOME="$check_home/.local/share" XDG_CACHE_HOME="$check_home/.cache" \
  CLAUDE_CONFIG_DIR="$check_home/.claude"
mkdir -p "$CODEX_HOME"
for b in "${BINARIES[@]}"; do
  if ! "$BIN/$b" --version </dev/null >/dev/null 2>&1; then
    echo "agent-clis: $BIN/$b does not start" >&2
    exit 1
  fi
done
echo "agent-clis: installed in $BIN: $("$BIN/claude" --version </dev/null | head -1); codex $("$BIN/codex" --version </dev/null | awk '{print $NF}'); opencode $("$BIN/opencode" --version </dev/null); gemini $("$BIN/gemini" --version </dev/null)"
