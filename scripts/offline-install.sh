#!/usr/bin/env bash
# Install gem-edge on an air-gapped machine from the folder scripts/make-offline.sh made (this script is its
# install.sh):
#
#   bash OUT/install.sh PREFIX        # e.g. /opt/gem-edge
#
# PREFIX/venv/                  a venv: pip install --no-index from OUT/wheels only, binary wheels only (nothing
#                               compiled; no pip configuration or index of this machine is read); run again
#                               with a newer OUT, it upgrades in place
# PREFIX/bundles/<bundle id>/   the bundle, copied
# PREFIX/bundles/current        a symbolic link to it, switched atomically (an upgrade or a rollback is a switch)
# then every file of the bundle is re-hashed against its manifest (gem-run verify-bundle), and its signature
# checked when GEM_TRUSTED_KEYS names the trusted public keys. Exit 2 with one line on any refusal.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "install.sh: error: $*" >&2; exit 2; }
prefix=${1:-}
[ -n "$prefix" ] || fail "usage: bash install.sh PREFIX"
python=${PYTHON:-python3}
start=$(date +%s)

want=$(cat "$here/PYTHON")
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || fail "$python not found (set PYTHON=)"
[ "$want" = "$have" ] || fail "the wheels are for Python $want, $python is $have (set PYTHON= to a $want)"
baseline=$(cat "$here/BASELINE")
if [ "$baseline" != "unknown" ]; then
  cpu=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  for flag in $baseline; do
    [[ "$cpu" == *" $flag "* ]] || fail "this CPU lacks $flag, which the llama.cpp wheel needs ($baseline)"
  done
fi

export PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_REQUIRE_VIRTUALENV
mkdir -p "$prefix/bundles"
prefix=$(cd "$prefix" && pwd)
[ -d "$prefix/venv" ] || "$python" -m venv "$prefix/venv"
pip_install() {
  "$prefix/venv/bin/python" -m pip install -q --no-index --no-cache-dir --only-binary :all: --no-compile \
    --find-links "$here/wheels" "$@"
}
pip_install --upgrade "gem-edge[$(cat "$here/EXTRAS")]"
pip_install --force-reinstall --no-deps gem-edge     # a rebuilt gem-edge keeps its version number: install it anyway
# bytecode now, on every core (a service's venv is read-only at run time); the packages' own tests left out
"$prefix/venv/bin/python" -m compileall -q -j0 -x '/(tests?|testing)/' "$prefix/venv/lib" >/dev/null

for src in "$here"/bundles/*/; do
  id=$("$prefix/venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["bundle_id"])' \
       "$src/manifest.json")
  [ -n "$id" ] || fail "$src: manifest.json has no bundle_id"
  if [ ! -d "$prefix/bundles/$id" ]; then
    cp -a "$src" "$prefix/bundles/.$id.tmp"
    mv -T "$prefix/bundles/.$id.tmp" "$prefix/bundles/$id"
  fi
  "$prefix/venv/bin/gem-run" verify-bundle "$prefix/bundles/$id"
  ln -sfn "$id" "$prefix/bundles/.current.tmp"
  mv -T "$prefix/bundles/.current.tmp" "$prefix/bundles/current"
done
echo "install.sh: $prefix: gem-run $("$prefix/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("gem-edge"))')," \
     "bundle $(readlink "$prefix/bundles/current"); $(( $(date +%s) - start )) s" >&2
