#!/usr/bin/env bash
# A static (musl) release build of strata, checked as the release workflow checks its
# binaries: statically linked (no program interpreter), `strata --version`, and
# `strata check` on this repository's example fleet (renders every node; no network).
#
#   scripts/build-musl.sh            x86_64-unknown-linux-musl: cargo, rustup's musl std,
#                                    Debian's musl-tools (musl-gcc, for blake3's C/asm)
#   scripts/build-musl.sh aarch64    aarch64-unknown-linux-musl: cargo-zigbuild (pip install
#                                    cargo-zigbuild; it brings zig), and qemu-user to run it
#
# Measured on this 2-core machine, cargo -j 1, from a target directory without that
# target's build: x86_64 4m01s, aarch64 (zigbuild) 6m28s; a rebuild after a change to
# strata alone takes less. Honours CARGO_TARGET_DIR and CARGO_BUILD_JOBS.
# The binary: $CARGO_TARGET_DIR (default target)/TARGET/release/strata.
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-x86_64} in
x86_64 | x86_64-unknown-linux-musl) target=x86_64-unknown-linux-musl ;;
aarch64 | aarch64-unknown-linux-musl) target=aarch64-unknown-linux-musl ;;
*)
    echo "usage: $0 [x86_64|aarch64]" >&2
    exit 64
    ;;
esac

die() {
    echo "build-musl: $*" >&2
    exit 1
}

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" || die "could not install Rust's std for $target (rustup target add $target)"
fi

start=$SECONDS
if [[ $target == x86_64-* ]]; then
    [[ $(uname -m) == x86_64 ]] || die "the x86_64 build runs on an x86_64 machine (use cargo-zigbuild elsewhere)"
    command -v musl-gcc >/dev/null || die "musl-gcc not found: apt-get install musl-tools"
    cargo build --release --locked --target "$target" --bin strata
    run=()
else
    command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild not found: pip install cargo-zigbuild"
    cargo zigbuild --release --locked --target "$target" --bin strata
    if [[ $(uname -m) == aarch64 ]]; then
        run=()
    else
        command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 not found (to run the check): apt-get install qemu-user"
        run=(qemu-aarch64)
    fi
fi
built=$((SECONDS - start))

bin=${CARGO_TARGET_DIR:-target}/$target/release/strata
[[ -x $bin ]] || die "$bin was not built"
if readelf -l "$bin" | grep -q 'program interpreter'; then
    die "$bin is dynamically linked"
fi
echo "build-musl: $bin: static, $(stat -c %s "$bin") bytes, built in ${built}s"
"${run[@]}" "$bin" --version

# The example's modules read secrets with env(): placeholders stand in for every one.
"${run[@]}" "$bin" check --placeholder-secrets
echo "build-musl: ok ($target, $((SECONDS - start))s)"
