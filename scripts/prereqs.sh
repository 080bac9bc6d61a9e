# Installs what xdpgate needs to build and run its tests on Debian 12, and
# mounts bpffs. Sourced by scripts/setup and scripts/test; idempotent and
# quiet when everything is already there. Versions: ../shared/NOTES.md.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (xdpgate loads BPF and creates network namespaces)"
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || die "Rust is missing: install rustup (https://rustup.rs) first"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.cargo/bin:$PATH"

# Debian packages: LLVM 22 for bpf-linker (it must match nightly rustc's
# LLVM major), and the tools the lab and the tests drive (chromium and
# chromedriver for the web UI test, tests/tests/ui_e2e.rs).
APT_PACKAGES=(llvm-22-dev iproute2 ethtool iputils-ping netcat-openbsd tcpdump bpftool curl procps util-linux bird2 frr wrk tshark sqlite3 openssl python3-venv chromium chromium-driver)
# Containers (scripts/image, tests/tests/image.rs): buildah builds the
# FROM-scratch image, podman runs it with runc (crun cannot set the rlimits
# here; ../shared/NOTES.md, "Containers").
APT_PACKAGES+=(podman buildah runc)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# schemathesis, for the API's conformance to its OpenAPI document
# (tests/tests/api_schemathesis.rs reads the version from here), in a venv
# of its own: Debian's python refuses system-wide pip installs. Debian's
# python3 by path, whatever else is first on PATH.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/opt/xdpgate-venv
if ! "$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
  [ -x "$SCHEMATHESIS_VENV/bin/pip" ] || /usr/bin/python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Nightly with rust-src: aya-build compiles the eBPF crate with -Z build-std=core.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  say "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal --component rust-src
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  say "adding rust-src to nightly"
  rustup component add rust-src --toolchain nightly
fi
nightly_llvm=$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ "$nightly_llvm" = 22 ] || die "nightly rustc uses LLVM $nightly_llvm; bpf-linker here is built against LLVM 22 (see ../shared/NOTES.md)"

# bpf-linker from source against apt's LLVM 22 (its default feature wants
# LLVM 23, which Debian does not ship; prebuilt binaries are not reachable).
if ! command -v bpf-linker >/dev/null || ! bpf-linker --version >/dev/null 2>&1; then
  say "building bpf-linker against LLVM 22 (about 40 s)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --locked --no-default-features --features llvm-22
fi

# Kernel bits: bpffs for pinned links and maps.
mountpoint -q /sys/fs/bpf || { say "mounting bpffs at /sys/fs/bpf"; mount -t bpf bpf /sys/fs/bpf; }

# kubernetes-validate, for the Kubernetes manifests in deploy/k8s
# (tests/tests/deploy.rs reads the version from here). It bundles the
# Kubernetes JSON schemas (1.25 to 1.37), so it validates offline; the
# GitHub-hosted kubeconform and its schemas are not reachable from here.
# In the schemathesis venv.
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! "$SCHEMATHESIS_VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$KUBERNETES_VALIDATE_VERSION"; then
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
