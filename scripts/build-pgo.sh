#!/usr/bin/env bash
# Builds fulcrum with profile-guided optimisation, into target/pgo/fulcrum:
#  1. a release build instrumented to count what runs (-Cprofile-generate);
#  2. a training run: `fulcrum-bench compare` drives that build through every L7 and L4
#     scenario (HTTP/1.1 keep-alive and close, POST, cookies, TLS, HTTP/2, TCP relaying), side
#     by side with HAProxy as ever, so haproxy must be installed;
#  3. the counts merged with the toolchain's llvm-profdata (`rustup component add llvm-tools`;
#     a distribution's LLVM may not read rustc's profile format);
#  4. the release build again, laid out and inlined by those counts (-Cprofile-use).
# It takes two full release builds and about 4 minutes of training. What it buys, measured:
# bench/results/README.md, "Profile-guided optimisation".
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x $profdata ]]; then
  echo "build-pgo: $profdata is missing; install it with: rustup component add llvm-tools" >&2
  exit 1
fi
if ! command -v haproxy >/dev/null && [[ ! -x /usr/sbin/haproxy ]]; then
  echo "build-pgo: the training run compares with HAProxy; install haproxy first" >&2
  exit 1
fi

work=$PWD/target/pgo
rm -rf "$work/profiles" "$work/training"
mkdir -p "$work/profiles" "$work/training"

# The load generator and origins are not instrumented: their tokio and hyper would count
# towards the proxy's profile under the same function names.
cargo build --release --locked -p fulcrum-bench
# --target keeps RUSTFLAGS off build scripts and proc macros, which would otherwise be
# instrumented too and write profiles of the build itself.
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$work/profiles" \
  cargo build --release --locked -p fulcrum --target "$host" --target-dir "$work/generate"

target/release/fulcrum-bench compare \
  --fulcrum "$work/generate/$host/release/fulcrum" \
  --scenarios get,post,close,cookie,tls,h2,tcp-close,tcp-bulk \
  --rounds 1 --duration 3s --warmup 1s --idle-connections 1000 --bulk-size 256MiB \
  --out "$work/training" >/dev/null

"$profdata" merge -o "$work/fulcrum.profdata" "$work/profiles"
# Cargo rebuilds when RUSTFLAGS change, not when a file they name does: the profile's digest
# goes into its name so that a new profile rebuilds every crate.
digest=$(sha256sum "$work/fulcrum.profdata" | cut -c1-16)
profile="$work/fulcrum-$digest.profdata"
mv "$work/fulcrum.profdata" "$profile"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profile" \
  cargo build --release --locked -p fulcrum --target "$host" --target-dir "$work/use"

cp "$work/use/$host/release/fulcrum" "$work/fulcrum"
echo "build-pgo: $work/fulcrum (profile $profile)"
