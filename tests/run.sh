#!/usr/bin/env bash
# The whole opsux test suite, from a fresh clone on a fresh machine:
#   bash tests/run.sh
# 1. a virtual environment with opsux and its dev extras (reuses an active one),
# 2. system parts the tests need: Chromium (browser tests), PostgreSQL 15 server binaries, Redis and nginx,
# 3. notebooks clean and in sync with the exported modules,
# 4. notebook tests (nbdev_test), the catalog guard over our own code,
# 5. pytest: rules, storage on SQLite and on a throwaway PostgreSQL the tests start themselves, browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  step "virtual environment .venv"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
step "install opsux with its dev extras"
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[dev]"

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=""
need_apt() {
  [[ -n $apt_updated ]] || { as_root apt-get update -qq && apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)            # browser tests
command -v redis-server >/dev/null || missing+=(redis-server)  # queue tests: real rq and celery workers
command -v nginx >/dev/null || missing+=(nginx)                # the documented reverse-proxy configuration, run for real
if (( ${#missing[@]} )); then
  step "install ${missing[*]}"
  need_apt "${missing[@]}" || echo "!! could not install ${missing[*]}: the tests that need them will fail"
  # Debian's packages start daemons of their own; the tests start private ones on free ports instead
  for svc in redis-server nginx; do as_root service "$svc" stop >/dev/null 2>&1 || true; done
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  step "install the PostgreSQL server binaries"
  need_apt postgresql || echo "!! could not install postgresql: PostgreSQL tests will skip (or fail when OPSUX_REQUIRE_POSTGRES=1)"
  # the Debian package starts a cluster of its own; the tests use a throwaway one instead
  as_root service postgresql stop >/dev/null 2>&1 || true
fi

step "notebooks are clean and in sync with opsux/"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r nbs opsux settings.ini "$tmp"/
(cd "$tmp" && nbdev_clean >/dev/null && nbdev_export)
diff -r -x __pycache__ nbs "$tmp/nbs" || { echo "!! notebooks are not clean: run nbdev_clean"; exit 1; }
diff -r -x __pycache__ opsux "$tmp/opsux" || { echo "!! opsux/ is out of sync with nbs/: run nbdev_export"; exit 1; }

step "catalog guard over our own code"
opsux catalog check opsux bench

step "notebook tests"
# one process per notebook: a notebook that starts servers or watcher threads cannot disturb the next one
failed=()
while IFS= read -r nb; do
  if timeout 600 nbdev_test --path "$nb" >"$tmp/nbdev-test.log" 2>&1; then echo "ok   $nb"
  else echo "FAIL $nb"; cat "$tmp/nbdev-test.log"; failed+=("$nb"); fi
done < <(find nbs -name "*.ipynb" -not -path "*/.ipynb_checkpoints/*" | sort)
if (( ${#failed[@]} )); then echo "!! notebook tests failed: ${failed[*]}"; exit 1; fi

step "pytest (SQLite, PostgreSQL, Chromium)"
set +e
python -m pytest -q -p no:cacheprovider --timeout=600 tests "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then echo "!! pytest collected no tests: the suite is missing"; exit 1; fi
exit $rc
