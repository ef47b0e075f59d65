#!/usr/bin/env bash
# Install an Autobahn|Testsuite fuzzing client into .autobahn/ (git-ignored), for conformance/run.py.
#
# First choice is the original `wstest` (autobahntestsuite), which runs only on Python 2.7: a
# virtualenv in .autobahn/wstest made with $AUTOBAHN_PYTHON2, else pyenv's 2.7, else python2.7 on
# PATH. Where there is no 2.7, or its install fails, it falls back to `kosoku`, a Python 3 runner
# of the same case files, in .autobahn/kosoku. Versions are pinned in conformance/*.txt.
#
#   conformance/install.sh            wstest, else kosoku
#   conformance/install.sh kosoku     kosoku only (to compare the two runners)
#
# Idempotent: a runner that is installed from the current pins and answers is left alone. It never
# fails the build: when it cannot install anything it says why and exits 0, and run.py then
# reports the suite as not installed (exit 77), which the tests turn into a skip, or a failure on CI.
# What it does not do: run the suite (run.py does), or touch anything outside .autobahn/.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
DEST="$REPO/.autobahn"
WANT=${1:-auto}

say() { echo "conformance/install.sh: $*"; }

# The pins a runner was installed from; a change of pins means a reinstall.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
WSTEST_PINS=("$HERE/requirements-virtualenv-py27.txt" "$HERE/requirements-wstest-py27.txt")
KOSOKU_PINS=("$HERE/requirements-kosoku.txt")

# NAME STAMP CHECK-COMMAND...: installed from these pins, and the check command answers.
is_installed() {
    local name=$1 stamp=$2
    shift 2
    [ -f "$DEST/$name/.installed" ] && [ "$(cat "$DEST/$name/.installed")" = "$stamp" ] &&
        "$@" >/dev/null 2>&1
}

wstest_installed() { is_installed wstest "$(stamp_of "${WSTEST_PINS[@]}")" "$DEST/wstest/bin/wstest" -a; }
kosoku_installed() { is_installed kosoku "$(stamp_of "${KOSOKU_PINS[@]}")" "$DEST/kosoku/bin/kosoku" -h; }

# Run a step with its output in LOG; on failure show the end of it.
step() { # LOG WHAT COMMAND...
    local log=$1 what=$2
    shift 2
    say "$what"
    if ! "$@" >>"$log" 2>&1; then
        say "failed: $what (last lines of $log):"
        tail -n 15 "$log" | sed 's/^/  | /'
        return 1
    fi
}

find_python2() {
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in "${AUTOBAHN_PYTHON2:-}" "$root"/versions/2.7*/bin/python \
        "$(command -v python2.7 2>/dev/null)"; do
        if [ -n "$candidate" ] &&
            "$candidate" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

install_wstest() {
    local py2 log="$DEST/install-wstest.log"
    if ! py2=$(find_python2); then
        say "no Python 2.7 found (pyenv, python2.7 on PATH, or \$AUTOBAHN_PYTHON2): cannot install wstest"
        return 1
    fi
    rm -rf "$DEST/wstest" "$DEST/bootstrap"
    : >"$log"
    # The 2.7 interpreter may lack virtualenv; install it beside, not into, that interpreter.
    step "$log" "virtualenv for $py2 into .autobahn/bootstrap" \
        "$py2" -m pip install --disable-pip-version-check --target "$DEST/bootstrap" \
        -r "$HERE/requirements-virtualenv-py27.txt" || return 1
    step "$log" "virtualenv .autobahn/wstest" \
        env PYTHONPATH="$DEST/bootstrap" "$py2" -m virtualenv --no-periodic-update \
        --app-data "$DEST/app-data" "$DEST/wstest" || return 1
    # About a minute: some pinned packages (autobahn, wsaccel) build from source, with gcc.
    step "$log" "autobahntestsuite and its pinned dependencies into .autobahn/wstest" \
        "$DEST/wstest/bin/pip" install --disable-pip-version-check \
        -r "$HERE/requirements-wstest-py27.txt" || return 1
    step "$log" "check: wstest -a" "$DEST/wstest/bin/wstest" -a || return 1
    stamp_of "${WSTEST_PINS[@]}" >"$DEST/wstest/.installed"
}

install_kosoku() {
    local py3 log="$DEST/install-kosoku.log"
    py3="$REPO/.venv/bin/python"
    [ -x "$py3" ] || py3=$(command -v python3 2>/dev/null) || true
    if [ -z "$py3" ] || ! "$py3" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
        say "no Python 3.10 or newer found: cannot install kosoku"
        return 1
    fi
    rm -rf "$DEST/kosoku"
    : >"$log"
    step "$log" "venv .autobahn/kosoku" "$py3" -m venv "$DEST/kosoku" || return 1
    step "$log" "kosoku into .autobahn/kosoku" "$DEST/kosoku/bin/pip" install \
        --disable-pip-version-check -r "$HERE/requirements-kosoku.txt" || return 1
    step "$log" "check: kosoku -h" "$DEST/kosoku/bin/kosoku" -h || return 1
    stamp_of "${KOSOKU_PINS[@]}" >"$DEST/kosoku/.installed"
}

mkdir -p "$DEST"
case "$WANT" in
auto)
    if wstest_installed; then
        say "wstest is already installed in .autobahn/wstest; nothing to do"
    elif install_wstest; then
        say "installed wstest in .autobahn/wstest"
    elif kosoku_installed; then
        say "wstest could not be installed; kosoku is already installed in .autobahn/kosoku"
    elif install_kosoku; then
        say "wstest could not be installed; installed kosoku in .autobahn/kosoku instead"
    else
        say "could not install wstest or kosoku; conformance/run.py will report 'not installed'"
    fi
    ;;
kosoku)
    if kosoku_installed; then
        say "kosoku is already installed in .autobahn/kosoku; nothing to do"
    elif install_kosoku; then
        say "installed kosoku in .autobahn/kosoku"
    else
        say "could not install kosoku"
    fi
    ;;
wstest)
    if wstest_installed; then
        say "wstest is already installed in .autobahn/wstest; nothing to do"
    elif install_wstest; then
        say "installed wstest in .autobahn/wstest"
    else
        say "could not install wstest"
    fi
    ;;
*)
    say "usage: conformance/install.sh [auto|wstest|kosoku]"
    exit 2
    ;;
esac
exit 0
