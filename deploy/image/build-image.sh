#!/usr/bin/env bash
# Builds fanout's container image without a container engine (`make image`): a Debian root
# filesystem made from Debian's packages by mmdebstrap (the runtime libraries the installed
# binaries link, found with ldd and dpkg, plus tini), a `fanout` user (uid 10001), and the
# `cmake --install` of a release build, packed by umoci as an OCI image archive of two layers
# (Debian, then fanout) labelled with the version.
#
#   deploy/image/build-image.sh BUILD_DIR [OUTPUT.tar]
#
# OUTPUT defaults to BUILD_DIR/deploy-image/fanout-VERSION.oci.tar; import it with
# `skopeo copy oci-archive:OUTPUT docker-daemon:fanout:VERSION` or `podman load -i OUTPUT`.
# The root filesystem (the slow part, ~25 s and the network) is cached under
# BUILD_DIR/deploy-image/, keyed by the package list: a second build takes seconds.
# Exit codes: 0 built, 1 failure, 77 mmdebstrap or umoci missing (scripts/install-deps.sh
# installs them).
set -euo pipefail
build_dir=$(realpath "$1")
suite=bookworm
recipe=2  # bump when the root filesystem's recipe below changes: a new cache key

for tool in mmdebstrap umoci; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed (Debian package $tool; scripts/install-deps.sh installs it)"
    exit 77
  fi
done
[[ -f $build_dir/CMakeCache.txt ]] || { echo "build-image: $build_dir is not a configured build" >&2; exit 1; }
if grep -q '^FANOUT_SANITIZE:STRING=.\+' "$build_dir/CMakeCache.txt"; then
  echo "build-image: $build_dir is a sanitized build; images are made from the release build" >&2
  exit 1
fi
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build_dir/CMakeCache.txt")
[[ -n $version ]] || { echo "build-image: no project version in $build_dir/CMakeCache.txt" >&2; exit 1; }
cache="$build_dir/deploy-image"
output=${2:-$cache/fanout-$version.oci.tar}
mkdir -p "$cache"
work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- the installed fanout: its programs only (headers and static libraries are for building) ----
cmake --install "$build_dir" --prefix "$work/install" --strip >"$work/install.log"
binaries=("$work"/install/bin/*)
((${#binaries[@]} > 0)) || { echo "build-image: nothing installed in $work/install/bin" >&2; exit 1; }

# ---- the packages that hold the libraries they link ----
libraries=$(ldd "${binaries[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
packages=tini
for library in $libraries; do
  owner=$(dpkg -S "$(realpath "$library")" 2>/dev/null || dpkg -S "$library" 2>/dev/null) ||
    { echo "build-image: no Debian package holds $library" >&2; exit 1; }
  packages="$packages ${owner%%:*}"
done
package_list=$(tr ' ' '\n' <<<"$packages" | grep -vx -e '' -e libc6 | sort -u | paste -sd, -)
key=$(printf '%s\n' "$suite" "$recipe" "$package_list" | sha256sum | cut -c1-16)
rootfs="$cache/rootfs-$suite-$key.tar"

if [[ ! -f $rootfs ]]; then
  echo "build-image: Debian $suite root filesystem with $package_list (cached as $rootfs)"
  # essential: dpkg, coreutils and a shell, no apt; the user is written by hand (no passwd tools
  # in this variant). Documentation and locales stay out, and so do this machine's host name and
  # resolver (mmdebstrap copies them in; a container runtime provides its own).
  mmdebstrap --variant=essential --include="$package_list" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='echo "fanout:x:10001:10001:fanout:/var/lib/fanout:/usr/sbin/nologin" >>"$1/etc/passwd"' \
    --customize-hook='echo "fanout:x:10001:" >>"$1/etc/group"' \
    --customize-hook='echo "fanout:!:19000::::::" >>"$1/etc/shadow"' \
    --customize-hook='mkdir -p "$1/var/lib/fanout" && chown 10001:10001 "$1/var/lib/fanout" && chmod 0700 "$1/var/lib/fanout"' \
    --customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists" "$1/var/log"/*' \
    --customize-hook='printf "fanout\n" >"$1/etc/hostname" && : >"$1/etc/resolv.conf"' \
    "$suite" "$work/rootfs.tar" \
    "deb http://deb.debian.org/debian $suite main" \
    "deb http://deb.debian.org/debian $suite-updates main" \
    "deb http://deb.debian.org/debian-security $suite-security main" >"$work/mmdebstrap.log" 2>&1 ||
    { tail -n 30 "$work/mmdebstrap.log" >&2; echo "build-image: mmdebstrap failed" >&2; exit 1; }
  mv "$work/rootfs.tar" "$rootfs"
  # Older root filesystems of this build directory are of no more use.
  find "$cache" -maxdepth 1 -name "rootfs-*.tar" ! -name "$(basename "$rootfs")" -delete
fi

# ---- the OCI image: Debian layer (cached with the root filesystem), fanout layer, configuration ----
# Layers are added verbatim (umoci raw add-layer): no unpacking, and the Debian layer is
# compressed once per root filesystem, not once per build.
base="$cache/base-$suite-$key"
if [[ ! -d $base ]]; then
  umoci init --layout "$work/base"
  umoci new --image "$work/base:debian"
  umoci raw add-layer --image "$work/base:debian" --history.created_by "mmdebstrap $suite: $package_list" "$rootfs"
  mv "$work/base" "$base"
  find "$cache" -maxdepth 1 -name "base-*" ! -name "$(basename "$base")" -exec rm -rf {} +
fi
layout="$work/layout"
image="$layout:$version"
cp -a "$base" "$layout"
install -d "$work/layer/usr/local/bin"
install -m 0755 "${binaries[@]}" "$work/layer/usr/local/bin/"
tar -C "$work/layer" --owner=0 --group=0 --numeric-owner -cf "$work/fanout-layer.tar" ./usr/local/bin
umoci raw add-layer --image "$layout:debian" --tag "$version" \
  --history.created_by "cmake --install (fanout $version)" "$work/fanout-layer.tar"
umoci rm --image "$layout:debian"
# tini is PID 1: it hands SIGTERM to the program (which drains or stops on it) and reaps what a
# shell task orphans. The program and its flags are the container's arguments:
#   fanout-broker --bind tcp://0.0.0.0:5555 ...   fanout-worker --connect ...
umoci config --image "$image" \
  --config.user 10001:10001 --config.workingdir /var/lib/fanout \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.entrypoint /usr/bin/tini --config.entrypoint -- \
  --config.cmd fanout --config.cmd --help \
  --config.exposedports 5555/tcp --config.exposedports 9464/tcp --config.exposedports 9465/tcp \
  --config.volume /var/lib/fanout \
  --config.stopsignal SIGTERM \
  --config.label org.opencontainers.image.title=fanout \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.description="fanout broker, worker and tool" \
  --history.created_by "fanout image configuration"
umoci gc --layout "$layout"

mkdir -p "$(dirname "$output")"
tar -C "$layout" -cf "$output.tmp" .
mv "$output.tmp" "$output"
echo "build-image: $output (fanout $version, $(du -h "$output" | cut -f1))"
