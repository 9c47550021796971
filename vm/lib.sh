# Shared by the vm/ scripts (sourced, not run).
#
# Built artifacts live outside the work tree (a debootstrap root holds thousands of .js and
# device files that eslint/prettier/tsc would otherwise walk): $GANTRY_VM_CACHE, default
# ~/.cache/gantry-vm. Every artifact is keyed by a hash of its inputs, so a rerun reuses it.

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$VM_DIR/.." && pwd)"
CACHE_DIR="${GANTRY_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/gantry-vm}"
mkdir -p "$CACHE_DIR"

log() { printf '[vm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# hash_inputs FILE|DIR... : one sha256 over the contents (and relative names) of everything given.
hash_inputs() {
  local p
  for p in "$@"; do
    if [ -d "$p" ]; then
      (cd "$p" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    elif [ -e "$p" ]; then
      sha256sum "$p" | sed "s#  .*#  $(basename "$p")#"
    else
      printf 'literal %s\n' "$p"
    fi
  done | sha256sum | cut -c1-16
}

need() {
  local missing=() c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run vm/install-host-packages.sh)"
}
