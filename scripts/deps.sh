# Sourced by scripts/demo, scripts/bench, scripts/fuzz and scripts/test:
# installs the Debian packages each needs, when they are missing. The build
# itself needs only cargo and libzmq (the dashboard's chart library is
# vendored in collector/assets/vendor/uplot).
#   libzmq3-dev, pkg-config: the zmq crate links the system libzmq (4.3.4,
#     with CURVE through libsodium); never the crate's vendored build.
#   curl: the demo waits for the collector's HTTP port with it.
#   python3 with venv: the example application and the tests' StatsD and
#     Prometheus clients (examples/requirements.txt) in target/py.
# With CURVEMON_BENCH_DEPS (scripts/bench), also:
#   prometheus-node-exporter: the benchmark runs it beside the agent.
# With CURVEMON_TEST_DEPS (scripts/test), also:
#   systemd: systemd-analyze checks the unit files.
#   prometheus-node-exporter: the agreement test; prometheus: its promtool
#     checks /metrics, and it receives the collector's remote write, as does
#     victoria-metrics.
#   chromium, chromium-driver: the dashboard's browser test.
#   redis-server, postgresql, rabbitmq-server, openssl: the availability
#     checks' tests run real servers, each on its own ports and data
#     directory, started by the tests (the packages' own services are not
#     used), and make self-signed certificates.
#   lintian, dpkg-dev: the packages' test builds, checks, installs and purges
#     the .deb files of scripts/package.
curvemon_sudo=""
[ "$(id -u)" -eq 0 ] || curvemon_sudo="sudo"
curvemon_need=()
curvemon_pkgs=(libzmq3-dev pkg-config curl)
[ -z "${CURVEMON_BENCH_DEPS:-}" ] || curvemon_pkgs+=(prometheus-node-exporter)
[ -z "${CURVEMON_TEST_DEPS:-}" ] || curvemon_pkgs+=(systemd prometheus-node-exporter prometheus chromium
    chromium-driver redis-server postgresql rabbitmq-server openssl victoria-metrics lintian dpkg-dev)
for pkg in "${curvemon_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || curvemon_need+=("$pkg")
done
if [ ${#curvemon_need[@]} -gt 0 ]; then
        echo "Installing ${curvemon_need[*]} ..." >&2

    $curvemon_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $curvemon_sudo apt-get install -y -qq "${curvemon_need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
# The Python clients of examples/requirements.txt, in a virtual environment
# of their own (target/py), once per change of that file.
curvemon_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
curvemon_py="$curvemon_root/target/py"
if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "Installing python3-venv ..." >&2
    DEBIAN_FRONTEND=noninteractive $curvemon_sudo apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x "$curvemon_py/bin/python3" ] ||
    ! cmp -s "$curvemon_root/examples/requirements.txt" "$curvemon_py/.curvemon-requirements"; then
    echo "Installing the example's Python clients into target/py ..." >&2
    rm -rf "$curvemon_py"
    python3 -m venv "$curvemon_py"
    "$curvemon_py/bin/pip" install --quiet --disable-pip-version-check -r "$curvemon_root/examples/requirements.txt"
    cp "$curvemon_root/examples/requirements.txt" "$curvemon_py/.curvemon-requirements"
fi
export CURVEMON_PYTHON="$curvemon_py/bin/python3"
