# Sourced by scripts/demo and tests/run: makes sure a cmake is there, since Pingora builds its
# zlib-ng with it. In order: `$CMAKE` or `cmake` on PATH as they are; one installed earlier into
# target/tools/cmake; Debian's package when running as root with apt-get; otherwise PyPI's `cmake`
# wheel into target/tools/cmake (needs only python3), with `CMAKE` pointing at it (the `cmake`
# crate that builds zlib-ng reads `CMAKE`).
ensure_cmake() {
  if [ -n "${CMAKE:-}" ] && [ -x "${CMAKE}" ]; then return 0; fi
  if command -v cmake >/dev/null 2>&1; then return 0; fi
  local here="$PWD/target/tools/cmake"
  if [ -x "$here/bin/cmake" ]; then
    export CMAKE="$here/bin/cmake"
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "cmake not found: installing Debian's cmake package (Pingora builds zlib-ng with it)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet.
    if ! apt-get install -y -qq cmake >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq cmake >/dev/null
    fi
    if command -v cmake >/dev/null 2>&1; then return 0; fi
  fi
  echo "cmake not found: installing PyPI's cmake into target/tools/cmake (Pingora builds zlib-ng with it)" >&2
  python3 -m venv "$here"
  "$here/bin/pip" install --quiet --disable-pip-version-check 'cmake>=3.20,<4'
  export CMAKE="$here/bin/cmake"
}
