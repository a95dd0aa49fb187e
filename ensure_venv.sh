# Sourced by run_demo.sh and run_tests.sh: make .venv from requirements.txt when it is missing or out of date
# (a stamp keeps the hash of the requirements it was made from), then activate it.
venv_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv_stamp="$venv_repo/.venv/.requirements.sha256"
venv_want="$(sha256sum "$venv_repo/requirements.txt" | cut -d' ' -f1)"
venv_ready() { [ -x "$venv_repo/.venv/bin/python" ] && [ "$(cat "$venv_stamp" 2>/dev/null)" = "$venv_want" ]; }
if ! venv_ready && command -v flock >/dev/null; then
  # two commands started at once: the second waits for the first's set-up instead of installing into it too
  exec 9>"$venv_repo/.venv.lock" && flock 9
fi
if ! venv_ready; then
  echo "setting up $venv_repo/.venv from requirements.txt (once; a few minutes) ..."
  command -v python3 >/dev/null || { echo "error: python3 is not installed; install Python 3.11 with venv" >&2; exit 1; }
  python3 -m venv "$venv_repo/.venv" \
    || { echo "error: 'python3 -m venv' failed; install the venv module (e.g. apt install python3-venv)" >&2; exit 1; }
  "$venv_repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$venv_repo/requirements.txt" \
    || { echo "error: pip could not install requirements.txt into $venv_repo/.venv (see above)" >&2; exit 1; }
  echo "$venv_want" > "$venv_stamp"  # last: a set-up killed before it is done again next time
fi
exec 9>&-  # the lock, if taken, is released (closing a descriptor not open is harmless)
. "$venv_repo/.venv/bin/activate"
