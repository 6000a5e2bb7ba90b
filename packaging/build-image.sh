#!/usr/bin/env bash
# Builds sigtrace's container image (packaging/Dockerfile) on this machine, as root, with no
# registry: the Debian 12 base is made locally with debootstrap + `docker import`, and the
# Python wheels are built with the host's pip into the build context, so the build installs
# them with --no-index and never reaches PyPI (apt inside the build reaches Debian's archive).
#
#   sudo packaging/build-image.sh                   # -> sigtrace:<version> and sigtrace:latest
#   IMAGE=registry.example/sigtrace:0.1.0 sudo packaging/build-image.sh
#   REBUILD_BPF=1 sudo packaging/build-image.sh     # compile bpf/ inside the build
#   sudo packaging/build-image.sh --refresh-base    # debootstrap again (security updates)
#   BASE=debian:bookworm-slim packaging/build-image.sh   # where a registry is reachable
#
# Caching: the base is made once and labelled with a hash of its recipe; it is made again only
# when the recipe changes or with --refresh-base. The image is labelled with a hash of every
# input (sources, BPF object, Dockerfile, this script, base image id, build args); when the
# existing image carries the same hash, nothing is built. Docker's layer cache keeps the apt
# layer across source changes. Prints the image name on stdout, progress on stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITE=bookworm
# The base comes from this host's own apt sources (a local mirror or proxy works as-is);
# DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR override them.
if [ -z "${DEBIAN_MIRROR:-}" ]; then
  read -r DEBIAN_MIRROR host_security < <(python3 "$ROOT/packaging/apt_mirror.py" "$SUITE") ||
    { echo "build-image: no Debian mirror: set DEBIAN_MIRROR" >&2; exit 1; }
  DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-${host_security:-}}
fi
MIRROR=$DEBIAN_MIRROR
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-}
BASE_IMAGE=sigtrace-base:$SUITE
BASE=${BASE:-$BASE_IMAGE}
REBUILD_BPF=${REBUILD_BPF:-0}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)
# OCI labels: the commit built (with -dirty when the tree has changes) and where it comes from
# (the checkout's origin remote, or SOURCE_URL; left out when neither says).
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$REVISION" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then
  REVISION="$REVISION-dirty"
fi
SOURCE_URL=${SOURCE_URL:-$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)}
# The default name also gets sigtrace:latest; a name you give is the only tag.
tags=(-t "${IMAGE:-sigtrace:$VERSION}")
[ -n "${IMAGE:-}" ] || tags+=(-t sigtrace:latest)
IMAGE=${IMAGE:-sigtrace:$VERSION}
# Bump when the way the base is made changes (the hash covers the parameters below too).
BASE_RECIPE_VERSION=1
BASE_LABEL=sigtrace.base.recipe-sha256
INPUTS_LABEL=sigtrace.image.inputs-sha256
# The legacy builder: Debian's docker.io has no buildx plugin, and nothing here needs BuildKit.
export DOCKER_BUILDKIT=0

refresh_base=0
for arg in "$@"; do
  case $arg in
    --refresh-base) refresh_base=1 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { echo "build-image: $*" >&2; }
die() { say "$*"; exit 1; }
label_of() { # IMAGE LABEL: the label's value, or nothing when the image or label is missing
  docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

[ "$(id -u)" -eq 0 ] || die "run as root (docker and debootstrap need it)"
[ -n "$VERSION" ] || die "no version in $ROOT/pyproject.toml"
docker info >/dev/null 2>&1 || die "Docker does not answer; start it (scripts/services)"

# --- The base: Debian 12 minbase, slimmed like the official -slim images.
make_base() {
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  local dir
  dir=$(mktemp -d /var/tmp/sigtrace-base.XXXXXX)
  # Not `trap ... RETURN`: a failed debootstrap exits the script under set -e.
  trap 'rm -rf "$dir"' EXIT
  say "debootstrap $SUITE from $MIRROR (once; later runs reuse $BASE_IMAGE)"
  debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >/dev/null
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [ -z "$SECURITY_MIRROR" ] || echo "deb $SECURITY_MIRROR $SUITE-security main"
  } >"$dir/etc/apt/sources.list"
  # What the official -slim images exclude: documentation, man pages, translations.
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
  # No service may start during an image build.
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/usr/sbin/policy-rc.d"
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${dir:?}"/usr/share/man/* "${dir:?}"/usr/share/info/* "${dir:?}"/var/lib/apt/lists/* \
    "${dir:?}"/var/cache/apt/*.bin "${dir:?}"/var/cache/apt/archives/*.deb "${dir:?}"/var/log/*.log \
    "${dir:?}"/var/log/apt/* "${dir:?}"/dev/*
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  tar -C "$dir" --numeric-owner -c . |
    docker import --change "LABEL $BASE_LABEL=$1" --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
  trap - EXIT
}

if [ "$BASE" = "$BASE_IMAGE" ]; then
  recipe=$(printf '%s\n' "$BASE_RECIPE_VERSION" "$SUITE" "$MIRROR" "$SECURITY_MIRROR" minbase \
    "$(sed -n '/^make_base()/,/^}/p' "$0")" | sha256sum | cut -d' ' -f1)
  if [ "$refresh_base" = 1 ] || [ "$(label_of "$BASE_IMAGE" "$BASE_LABEL")" != "$recipe" ]; then
    start=$SECONDS
    make_base "$recipe"
    say "made $BASE_IMAGE in $((SECONDS - start)) s"
  else
    say "reusing $BASE_IMAGE"
  fi
fi
base_id=$(docker image inspect --format '{{.Id}}' "$BASE" 2>/dev/null) ||
  die "no image $BASE here (nothing is pulled: build it, or leave BASE unset)"

# --- Skip the build when the image was built from exactly these inputs.
inputs=$(
  cd "$ROOT"
  {
    printf '%s\n' "$base_id" "REBUILD_BPF=$REBUILD_BPF"
    find pyproject.toml README.md LICENSE packaging/Dockerfile packaging/build-image.sh bpf sigtrace \
      -type f -not -name '*.pyc' -not -path '*/__pycache__/*' -not -name '.check.o' -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)
if [ "$(label_of "$IMAGE" "$INPUTS_LABEL")" = "$inputs" ]; then
  say "$IMAGE is up to date"
  echo "$IMAGE"
  exit 0
fi

# --- The build context: Dockerfile, wheels, BPF sources and object. Nothing else of the repo
# (not .venv) is sent to the daemon.
ctx=$(mktemp -d /var/tmp/sigtrace-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp "$ROOT/packaging/Dockerfile" "$ctx/"
cp -r "$ROOT/bpf" "$ctx/bpf"
rm -f "$ctx/bpf/.check.o"
cp "$ROOT/sigtrace/data/sigtrace.bpf.o" "$ctx/"
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
# A copy of the source, so that the wheel build leaves no build/ or egg-info in the tree.
src="$ctx/src"
mkdir "$src"
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/LICENSE" "$ROOT/sigtrace" "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
start=$SECONDS
"$PY" -m pip wheel -q --disable-pip-version-check --wheel-dir "$ctx/wheels" "$src" >&2 ||
  die "pip wheel failed (needs PyPI for the dependencies, on the host)"
rm -rf "$src"
say "wheels: $(cd "$ctx/wheels" && echo *) ($((SECONDS - start)) s)"

start=$SECONDS
docker build -q \
  --build-arg "BASE=$BASE" \
  --build-arg "REBUILD_BPF=$REBUILD_BPF" \
  --label "$INPUTS_LABEL=$inputs" \
  --label "org.opencontainers.image.version=$VERSION" \
  --label "org.opencontainers.image.title=sigtrace" \
  --label "org.opencontainers.image.revision=$REVISION" \
  --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  ${SOURCE_URL:+--label "org.opencontainers.image.source=$SOURCE_URL"} \
  "${tags[@]}" "$ctx" >/dev/null ||
  die "docker build failed"
# Images this script made that are now untagged (the one this build replaced, earlier build
# stages) would pile up with every change. They carry the base's label; nothing else does.
docker image prune -f --filter "label=$BASE_LABEL" >/dev/null || true
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE in $((SECONDS - start)) s, $((size / 1000000)) MB"
echo "$IMAGE"
