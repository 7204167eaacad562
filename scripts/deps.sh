# Sourced by scripts/demo and scripts/test: installs the Debian packages
# curvemon builds and tests with, when they are missing.
#   libzmq3-dev, pkg-config: the zmq crate links the system libzmq (4.3.4,
#     with CURVE through libsodium); never the crate's vendored build.
#   systemd: systemd-analyze checks the unit files.
#   curl: the demo waits for the collector's HTTP port with it.
#   prometheus-node-exporter: the agreement test and the benchmark run it
#     beside the agent; prometheus: its promtool checks /metrics.
curvemon_need=()
for pkg in libzmq3-dev pkg-config systemd curl prometheus-node-exporter prometheus; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || curvemon_need+=("$pkg")
done
if [ ${#curvemon_need[@]} -gt 0 ]; then
    echo "Installing ${curvemon_need[*]} ..." >&2
    curvemon_sudo=""
    [ "$(id -u)" -eq 0 ] || curvemon_sudo="sudo"
    $curvemon_sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $curvemon_sudo apt-get install -y -qq "${curvemon_need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
