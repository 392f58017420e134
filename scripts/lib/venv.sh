# The test virtualenv (sourced, not run), shared by scripts/test, scripts/bench-scale and
# scripts/check-kubernetes: `venv_ensure DIR` makes DIR a virtualenv holding exactly the
# hashed pins of scripts/requirements/test.txt. A venv made from other pins is made again,
# so a changed requirements file reaches every machine that already has a venv.

venv_requirements=scripts/requirements/test.txt

venv_ensure() {
  local dir=$1 stamp want
  stamp="$dir/.s3-importd-requirements"
  want=$(sha256sum "$venv_requirements" | cut -d' ' -f1)
  if [[ -x $dir/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  echo "venv: installing $venv_requirements into $dir" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" || {
    echo "venv: python3 -m venv failed; on Debian or Ubuntu: apt-get install python3-venv" >&2
    return 1
  }
  # --require-hashes: every package, dependencies included, must match its pinned hash, so a
  # fresh machine installs byte for byte what CI installed. --no-deps: the file is complete.
  "$dir/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r "$venv_requirements" || return 1
  echo "$want" > "$stamp"
}
