#!/usr/bin/env bash
# periscope quickstart, for a Debian 12 machine, as root:
#   ./quickstart.sh run    install what is missing, build, run periscoped in the foreground
#   ./quickstart.sh test   install what is missing, build, run the whole test suite
set -euo pipefail
umask 022
cd "$(dirname "$(readlink -f "$0")")"
top=$PWD
build=$top/build

BUILD_PACKAGES=(build-essential autoconf automake libtool pkg-config clang llvm bpftool
	libbpf-dev libelf-dev zlib1g-dev libsnappy-dev libuv1-dev libyaml-dev libcurl4-openssl-dev check)
# What the tests drive: real servers, real clients, the real validators.
TEST_PACKAGES=(python3 curl iproute2 procps prometheus prometheus-node-exporter rsyslog nginx
	apache2-utils wrk openssl libclang-rt-14-dev valgrind util-linux
	librdkafka-dev kcat python3-kafka python3-confluent-kafka
	python3-pymongo libmongoc-dev mariadb-server mariadb-client sysbench python3-pymysql
	python3-mysqldb python3-snappy)
# What `make check-packaging` drives: the package builders, a Debian root, a container runtime.
PACKAGING_PACKAGES=(debhelper dpkg-dev lintian rpm debootstrap podman runc strace python3-yaml
	groff-base)

say() { printf '\033[1mquickstart:\033[0m %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

missing_packages() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
	done
}

install_packages() {
	local missing
	missing=$(missing_packages "$@")
	[ -n "$missing" ] || return 0
	[ "$(id -u)" = 0 ] || die "missing packages ($(echo $missing)); run as root or install them"
	say "installing: $(echo $missing)"
	# Packages must not start their services: the tests start their own servers.
	local policy=/usr/sbin/policy-rc.d own_policy=
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && own_policy=1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
	[ -z "$own_policy" ] || rm -f $policy
}

# The mongodb test drives the official Node.js driver too: npm puts it in the test's
# git-ignored node_modules, at the version package-lock.json pins.
install_node_driver() {
	local dir=$top/tests/integration/mongodb
	command -v npm >/dev/null || install_packages nodejs npm
	[ -d "$dir/node_modules/mongodb" ] && return 0
	say "installing the Node.js MongoDB driver for the tests (npm ci)"
	(cd "$dir" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) ||
		die "npm ci failed in $dir"
}

configure_tree() { # dir [configure args...]
	local dir=$1; shift
	if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ]; then
		say "generating configure"
		"$top/autogen.sh" >/dev/null 2>&1 || "$top/autogen.sh"
	fi
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ] || [ "$top/configure" -nt "$dir/Makefile" ]; then
		say "configuring $dir"
		# configure's "rm -f core" (for core dumps) complains about our core/ objects directory.
		(cd "$dir" && "$top/configure" --prefix=/usr --sysconfdir=/etc --localstatedir=/var -q "$@") \
			2> >(grep -v "cannot remove 'core'" >&2)
	fi
}

build() { # dir
	say "building in $1"
	make -C "$1" -j"$(nproc)" -s
}

run() {
	install_packages "${BUILD_PACKAGES[@]}"
	configure_tree "$build"
	build "$build"
	say "starting periscoped; Ctrl-C flushes and stops it"
	say "to see traffic, in another terminal: python3 -m http.server 8000 & curl -s localhost:8000 >/dev/null"
	exec "$build/periscoped" --plugin-dir "$build/plugins/.libs" "$@"
}

run_tests() {
	local packaging=
	[ "$(id -u)" = 0 ] && packaging=1
	install_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" \
		${packaging:+"${PACKAGING_PACKAGES[@]}"}
	install_node_driver
	configure_tree "$build"
	build "$build"
	say "make check (unit and integration tests)"
	make -C "$build" -j"$(nproc)" check || { cat_failures "$build"; exit 1; }
	say "unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer"
	configure_tree "$top/build-asan" --enable-sanitizers
	build "$top/build-asan"
	make -C "$top/build-asan" -j"$(nproc)" check-unit || { cat_failures "$top/build-asan"; exit 1; }
	if [ "$(id -u)" = 0 ]; then
		say "make check-lsan (the sanitizer build's periscoped under privacy.sh's workload: no leak at exit)"
		make -C "$top/build-asan" check-lsan || exit 1
	fi
	say "make fuzz-smoke (each libFuzzer target briefly from its seed corpus)"
	make -C "$build" fuzz-smoke || exit 1
	if [ -n "$packaging" ]; then
		say "make check-packaging (.deb, .rpm, a Debian root, the example plugin, the unit, the container)"
		make -C "$build" check-packaging || exit 1
	fi
	say "all tests passed"
}

cat_failures() {
	local log
	for log in $(grep -l -E '^(FAIL|ERROR)' $(find "$1/tests" -name '*.trs') 2>/dev/null); do
		echo "---- ${log%.trs}.log"
		tail -n 60 "${log%.trs}.log"
	done
}

case "${1:-}" in
run) shift; run "$@" ;;
test) run_tests ;;
*) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
