# shellcheck shell=sh disable=SC2034
# (SC2034: load_base sets BASE_* variables for the scripts that source this file)
# ci/lib.sh - helpers sourced by every ci/ script. Not executable on its own.
#
# Paths (override from the environment):
#   DEVEXCL_CACHE  downloads and the private apt state (default /var/cache/devexcl)
#   DEVEXCL_WORK   extracted trees and kernel builds   (default /var/tmp/devexcl)
#   DEVEXCL_OUT    results: logs, KTAP, JUnit, reports  (default <repo>/out)

# the repository: the nearest directory above the script that holds ci/lib.sh (the scripts
# live in ci/ and in its stage folders, ci/1-fetch/ ... ci/7-report/, ci/host/)
TOP=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
[ -f "$TOP/ci/lib.sh" ] || TOP=$(CDPATH='' cd -- "$TOP/.." && pwd)
[ -f "$TOP/ci/lib.sh" ] || { echo "ci/lib.sh: cannot find the repository above $0" >&2; exit 2; }
DEVEXCL_CACHE=${DEVEXCL_CACHE:-/var/cache/devexcl}
DEVEXCL_WORK=${DEVEXCL_WORK:-/var/tmp/devexcl}
DEVEXCL_OUT=${DEVEXCL_OUT:-$TOP/out}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
export TOP DEVEXCL_CACHE DEVEXCL_WORK DEVEXCL_OUT JOBS

: "${DEVEXCL_T0:=$(date +%s)}"
export DEVEXCL_T0

elapsed() {
	s=$(($(date +%s) - DEVEXCL_T0))
	printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# step "what is being done": progress line for long work
step() {
	printf '==> %s (%s)\n' "$*" "$(elapsed)"
}

info() {
	printf '    %s\n' "$*"
}

# die "what" "why" [log]: the one error format of the pipeline. The message also goes
# to the end of $DEVEXCL_ERRFILE when that is set (step_reason: CI's summary names it)
die() {
	if [ -n "${3:-}" ]; then
		set -- "$1" "$2 (log: $3)"
	fi
	printf 'error: %s: %s\n' "$1" "$2" >&2
	[ -z "${DEVEXCL_ERRFILE:-}" ] || printf '%s: %s\n' "$1" "$2" >>"$DEVEXCL_ERRFILE" || true
	exit 1
}

# fuzz_timeout CALLS PER_TEST: xgpu's fuzzer's own timeout in seconds, 10 ms a call and at
# least the others' (PER_TEST + the guest's 30 s); ci/5-boot/boot says why
fuzz_timeout() {
	_ft=$(($1 / 100))
	[ "$_ft" -ge $(($2 + 30)) ] || _ft=$(($2 + 30))
	echo "$_ft"
}

# run_step COMMAND...: run COMMAND with $DEVEXCL_ERRFILE set to a file of its own, and
# set step_why to the last error that die() (or guest_reports) wrote there, one line of at
# most 300 characters, or "see the error above" when there is none; returns COMMAND's status
run_step() {
	mkdir -p "$DEVEXCL_OUT"
	# (names of its own: a caller's _rc or _errf survives it)
	_run_step_f=$(mktemp "$DEVEXCL_OUT/.step-error.XXXXXX")
	_run_step_rc=0
	DEVEXCL_ERRFILE=$_run_step_f "$@" || _run_step_rc=$?
	step_why=$(tail -n 1 "$_run_step_f" | cut -c1-300)
	rm -f "$_run_step_f"
	step_why=${step_why:-see the error above}
	return $_run_step_rc
}

need_tool() {
	command -v "$1" >/dev/null 2>&1 ||
		die "missing tool $1" "install the Debian package '$2' (apt-get install $2)"
}

# load_base NAME: read bases/NAME into BASE_* variables
load_base() {
	f=$TOP/bases/$1
	if [ ! -f "$f" ]; then
		printf 'error: unknown base %s; valid bases:\n' "$1" >&2
		list_bases >&2
		exit 1
	fi
	BASE_NAME=$1
	BASE_KIND=
	BASE_VERSION=
	BASE_KERNELVERSION=
	APT_PACKAGE=
	APT_VERSION=
	APT_FILE=
	APT_SHA256=
	SERIES=
	FLAVOUR_SERIES=
	CONFIGS=
	APIS_STOCK=
	APIS_PATCHED=
	KREL=
	DEB_VERSION=
	PKGS=
	BUILD_SUITE=
	DEB_ABI=
	DEB_FLAVOURS=
	DEB_SUITE=
	if k=$(grep -m1 -oE '^(BASE_CI|COMPILE_USERS|INSTALL_TEST|NVIDIA_CHECK|BENCH_REFERENCE|KHUGEPAGED_FIX|DEPLOY_TEST|BENCH|XFAIL_STOCK)=' "$f"); then
		die "base $1" "bases/$1 sets ${k%=}: bases/ says what a base is; its CI policy is its row in ci/matrix, its expected stock failures are in ci/expected/xfail-stock"
	fi
	# shellcheck disable=SC1090
	. "$f"
	load_policy "$1"
	# NVIDIA_CHECK: yes on Debian's own kernels, or one of the base's Debian flavours
	case $BASE_KIND:$NVIDIA_CHECK in
	*:no | debian-kernel:yes) ;;
	debian-kernel:*) die "ci/matrix" "base $1 is Debian's kernel: NVIDIA_CHECK '$NVIDIA_CHECK' is not yes or no" ;;
	*:yes) die "ci/matrix" "base $1 is a source base: NVIDIA_CHECK must name one of its Debian flavours (DEB_FLAVOURS) or be no, not yes" ;;
	*)
		case " $(for _x in $DEB_FLAVOURS; do printf '%s ' "${_x%%:*}"; done)" in
		*" $NVIDIA_CHECK "*) ;;
		*) die "ci/matrix" "base $1: NVIDIA_CHECK '$NVIDIA_CHECK' is neither no nor one of its Debian flavours (DEB_FLAVOURS of bases/$1:$(for _x in $DEB_FLAVOURS; do printf ' %s' "${_x%%:*}"; done)${DEB_FLAVOURS:- none})" ;;
		esac ;;
	esac
	# DEPLOY_TEST: no, or one of a source base's Debian flavours
	case $BASE_KIND:$DEPLOY_TEST in
	*:no) ;;
	debian-kernel:*) die "ci/matrix" "base $1 is Debian's kernel: DEPLOY_TEST '$DEPLOY_TEST' is not no (the deployment tests build our kernel)" ;;
	*)
		case " $(for _x in $DEB_FLAVOURS; do printf '%s ' "${_x%%:*}"; done)" in
		*" $DEPLOY_TEST "*) ;;
		*) die "ci/matrix" "base $1: DEPLOY_TEST '$DEPLOY_TEST' is neither no nor one of its Debian flavours (DEB_FLAVOURS of bases/$1:$(for _x in $DEB_FLAVOURS; do printf ' %s' "${_x%%:*}"; done)${DEB_FLAVOURS:- none})" ;;
		esac ;;
	esac
	# a Debian flavour is built (and its packages installed) in the release whose compiler
	# built Debian's config, where that differs from the base's own (DEB_SUITE)
	if ! tiny_flavour && [ -n "$DEB_SUITE" ]; then
		BUILD_SUITE=$DEB_SUITE
	fi
	# a Debian flavour of a base built from upstream's source takes the series plus the
	# Debian patches its config assumes (FLAVOUR_SERIES: Debian's DFSG fixes, lockdown,
	# module keys, x32...), in a tree of its own (tree_dir); the test and bench flavours keep SERIES
	# DEB_FLAVOURS: "<flavour>:<sha256 of its linux-headers .deb>" ...
	_nf=0
	for _x in $DEB_FLAVOURS; do
		_nf=$((_nf + 1))
		case ${_x%%:*} in
		'' | test | bench | *[!a-z0-9-]*)
			die "base $1" "bases/$1: DEB_FLAVOURS entry '$_x': '${_x%%:*}' is not a Debian flavour name (test and bench are ours)" ;;
		esac
		echo "${_x#*:}" | grep -qxE '[0-9a-f]{64}' ||
			die "base $1" "bases/$1: DEB_FLAVOURS entry '$_x' is not <flavour>:<sha256>"
	done
	[ -z "$FLAVOUR_SERIES" ] || [ "$_nf" -gt 0 ] ||
		die "base $1" "bases/$1: FLAVOUR_SERIES=$FLAVOUR_SERIES, but no DEB_FLAVOURS: no flavour would build that series"
	if ! tiny_flavour && [ -n "$FLAVOUR_SERIES" ]; then
		if [ -z "$SERIES" ] || [ ! -f "$(series_file "$FLAVOUR_SERIES")" ]; then
			die "base $1" "bases/$1: FLAVOUR_SERIES=$FLAVOUR_SERIES names no series/$FLAVOUR_SERIES.series (or SERIES is empty)"
		fi
		SERIES=$FLAVOUR_SERIES
	fi
	if [ "$BASE_KIND" = debian-kernel ]; then
		# Debian's own kernel packages, tested as they are (no source, no series)
		if [ -z "$KREL" ] || [ -z "$DEB_VERSION" ] || [ -z "$PKGS" ]; then
			die "base $1" "bases/$1 lacks KREL, DEB_VERSION or PKGS"
		fi
	elif [ -z "$APT_FILE" ] || [ -z "$APT_SHA256" ] || [ -z "$BASE_KIND" ]; then
		die "base $1" "bases/$1 lacks BASE_KIND, APT_FILE or APT_SHA256"
	fi
	check_flavour
}

# need_source_base: die unless the loaded base is a source base (one that can be built)
need_source_base() {
	[ "$BASE_KIND" != debian-kernel ] ||
		die "base $BASE_NAME" "bases/$BASE_NAME is Debian's kernel package $DEB_VERSION, tested as is: there is no source to patch or build (valid source bases: $(grep -L '^BASE_KIND=debian-kernel' "$TOP"/bases/* | xargs -n1 basename | tr '\n' ' '))"
}

# need_series_base WHAT: die unless the loaded base carries a devexcl series (a patched
# kernel exists for it); WHAT names the step. Checked before any fetch or build.
need_series_base() {
	[ -n "$SERIES" ] ||
		die "$1 $BASE_NAME" "bases/$BASE_NAME names no SERIES: it is tested as its stock kernel only, there is no patched (devexcl) kernel to build or package for it (bases with a series: $(grep -l '^SERIES=[^[:space:]]' "$TOP"/bases/* | xargs -n1 basename | tr '\n' ' ' | sed 's/ $//'))"
}

# policy BASE COLUMN: one value of BASE's row in ci/matrix (COLUMN: a name of its header
# row: BASE_CI, COMPILE_USERS, ...). Dies naming the cause when the file, the row or the
# column is missing or a value is not one its column allows.
# the awk rule that reads ci/matrix's header row into col[COLUMN] (its field number) and
# ncol (the number of fields of a row), for policy and policy_bases
# shellcheck disable=SC2016 # (an awk program, not a shell expansion)
matrix_header='/^# base[ \t]+BASE_CI[ \t]/ { for (i = 3; i <= NF; i++) col[$i] = i - 1; ncol = NF - 1; next }'

policy() {
	_m=$TOP/ci/matrix
	[ -f "$_m" ] || die "ci/matrix" "missing: the CI policy of every base (one row per file of bases/)"
	_v=$(awk -v b="$1" -v c="$2" "$matrix_header"'
		/^#/ || !NF { next }
		$1 == b {
			if (!(c in col)) { print "ERR column " c " is not in the header row of ci/matrix"; exit }
			if (NF != ncol) { print "ERR the row of " b " has " NF - 1 " values, the header names " ncol - 1; exit }
			print $(col[c]); found = 1; exit
		}
		END { if (!found && !ncol) print "ERR no header row (\"# base BASE_CI ...\")" }' "$_m")
	case $_v in
	ERR\ *) die "ci/matrix" "${_v#ERR }" ;;
	'') die "ci/matrix" "no row for base $1: add one (every file of bases/ needs its CI policy there)" ;;
	esac
	case $2:$_v in
	BASE_CI:build | BASE_CI:apply | BASE_CI:apply-only) ;;
	BASE_CI:*) die "ci/matrix" "base $1: BASE_CI '$_v' is not build, apply or apply-only" ;;
	NVIDIA_CHECK:* | DEPLOY_TEST:*) ;;
	*:yes | *:no) ;;
	*) die "ci/matrix" "base $1: $2 '$_v' is not yes or no" ;;
	esac
	printf '%s\n' "$_v"
}

# load_policy BASE: BASE's row of ci/matrix into BASE_CI, COMPILE_USERS, INSTALL_TEST,
# NVIDIA_CHECK, BENCH_REFERENCE, KHUGEPAGED_FIX, DEPLOY_TEST, BENCH
load_policy() {
	BASE_CI=$(policy "$1" BASE_CI) || exit 1
	COMPILE_USERS=$(policy "$1" COMPILE_USERS) || exit 1
	INSTALL_TEST=$(policy "$1" INSTALL_TEST) || exit 1
	NVIDIA_CHECK=$(policy "$1" NVIDIA_CHECK) || exit 1
	BENCH_REFERENCE=$(policy "$1" BENCH_REFERENCE) || exit 1
	KHUGEPAGED_FIX=$(policy "$1" KHUGEPAGED_FIX) || exit 1
	DEPLOY_TEST=$(policy "$1" DEPLOY_TEST) || exit 1
	BENCH=$(policy "$1" BENCH) || exit 1
}

# policy_bases COLUMN VALUE: the bases whose ci/matrix row has VALUE in COLUMN, one per line
policy_bases() {
	[ -f "$TOP/ci/matrix" ] || die "ci/matrix" "missing: the CI policy of every base (one row per file of bases/)"
	_v=$(awk -v c="$1" -v v="$2" "$matrix_header"'
		/^#/ || !NF { next }
		!(c in col) { print "ERR column " c " is not in the header row of ci/matrix"; exit }
		$(col[c]) == v { print $1 }' "$TOP/ci/matrix")
	case $_v in ERR\ *) die "ci/matrix" "${_v#ERR }" ;; esac
	[ -z "$_v" ] || printf '%s\n' "$_v"
}

# xfail_stock BASE: the "thp-MODE:suite/test" entries that must fail on BASE's stock kernel
# (ci/expected/xfail-stock), one per line
xfail_stock() {
	[ -f "$TOP/ci/expected/xfail-stock" ] || die "ci/expected/xfail-stock" "missing: the tests that must fail on the stock kernels"
	awk -v b="$1" '!/^#/ && $1 == b { print $2 }' "$TOP/ci/expected/xfail-stock"
}

list_bases() {
	for f in "$TOP"/bases/*; do
		[ -f "$f" ] || continue
		desc=$(sed -n 's/^# *//p' "$f" | head -n 1)
		printf '  %-16s %s\n' "$(basename "$f")" "$desc"
	done
}

# DEVEXCL_ARCH (make ... ARCH=arm64): the architecture of the test kernels and their
# guest. x86_64 (default): built natively, booted under qemu-system-x86_64. arm64:
# cross-built with Debian's gcc-aarch64-linux-gnu, booted under qemu-system-aarch64 -M
# virt; its builds, artifacts, guest dirs, logs and runs are named with the suffix
# -arm64 (ARSUFFIX), so both architectures of a base live side by side on one tree.
# CROSS_PKG: the Debian package of the cross compiler (empty: none needed).
# arch_vars ARCH: set DEVEXCL_ARCH and the names above for ARCH (also in a subshell, for
# another architecture's paths)
arch_vars() {
	case $1 in
	x86_64 | amd64 | x86)
		DEVEXCL_ARCH=x86_64 ARSUFFIX='' KARCH=x86_64 CROSS='' CROSS_PKG='' KIMAGE=bzImage KIMAGE_PATH=arch/x86/boot/bzImage ;;
	arm64 | aarch64)
		DEVEXCL_ARCH=arm64 ARSUFFIX=-arm64 KARCH=arm64 CROSS=aarch64-linux-gnu- CROSS_PKG=gcc-aarch64-linux-gnu
		KIMAGE=Image KIMAGE_PATH=arch/arm64/boot/Image ;;
	*) die "architecture" "DEVEXCL_ARCH (make ARCH=) '$1' is not one of: x86_64 arm64" ;;
	esac
}
arch_vars "${DEVEXCL_ARCH:-x86_64}"
export DEVEXCL_ARCH

# FLAVOUR: the kernel configuration. "test" (default): the tiny debug config the QEMU
# tests boot; "bench": the same tiny config without the debug options, for make bench
# (ci/bench; BENCH_CONFIGS); otherwise a Debian flavour the base lists in DEB_FLAVOURS (Debian's own
# config of that flavour + the feature fragment), built in the base's Debian release.
FLAVOUR=${FLAVOUR:-test}
export FLAVOUR
# the suffix of names (logs, packages) for FLAVOUR: "" for test, "-<flavour>" otherwise
FLSUFFIX=
[ "$FLAVOUR" = test ] || FLSUFFIX=-$FLAVOUR
# arm64 has the test flavour only (Debian's arm64 flavour configs are not pinned yet)
# tiny_flavour: true for the flavours made from tinyconfig and our fragments (test, bench),
# false for a Debian flavour (Debian's own config)
tiny_flavour() {
	[ "$FLAVOUR" = test ] || [ "$FLAVOUR" = bench ]
}
[ -z "$ARSUFFIX" ] || tiny_flavour ||
	die "flavour $FLAVOUR" "FLAVOUR=$FLAVOUR is an x86_64 (Debian amd64) config; DEVEXCL_ARCH=arm64 builds the test flavour only (and make bench's bench flavour)"
# the fragments of the bench flavour, the same on every base (not the base's CONFIGS: a
# base's extra test fragments would make its bench kernel differ from the reference's):
# the test config, then configs/bench.config turning its debug options off
BENCH_CONFIGS="feature test-debug bench"
FLSUFFIX=$FLSUFFIX$ARSUFFIX
# DEVEXCL_BUILD_TAG=TAG: a build directory (and configure's copy of the signing key) kept
# apart from the regular one of the same base and flavour, named with ".TAG" (ci/run-base
# configures the Debian flavours this way: a make deb build in the same work directory is
# never touched)
BUILD_TAG=${DEVEXCL_BUILD_TAG:+.$DEVEXCL_BUILD_TAG}

# One source tree and one build directory per base (and per flavour other than test):
# the patched variant is the stock tree with the series pushed in place, so its build is
# incremental on the stock build.
# tree_name BASE: the name of BASE's source tree: the base's, or <base>+<series> for the
# loaded base's Debian flavours with a FLAVOUR_SERIES: a tree (and build directory) of
# their own, so they never pop the series of the tree the test flavour builds from (make
# matrix may build both at once), and no object built from one tree is kept for the other
tree_name() {
	if [ "$1" = "${BASE_NAME:-}" ] && [ -n "${FLAVOUR_SERIES:-}" ] && [ "${SERIES:-}" = "$FLAVOUR_SERIES" ]; then
		echo "$1+$SERIES"
	else
		echo "$1"
	fi
}

tree_dir() {
	echo "$DEVEXCL_WORK/tree/$(tree_name "$1")"
}

build_dir() {
	echo "$DEVEXCL_WORK/build/$(tree_name "$1")$FLSUFFIX$BUILD_TAG"
}

# what a variant's build produced: $KIMAGE (bzImage, arm64: Image), test_hmm.ko, config, kernelrelease, series rev
art_dir() {
	echo "$DEVEXCL_WORK/artifacts/$1-$2$FLSUFFIX"
}

# guest_dir BASE VARIANT: the guest side of a variant: tests, initramfs root and image
guest_dir() {
	echo "$DEVEXCL_WORK/guest/$1-$2$FLSUFFIX"
}

# x86_only WHAT: die unless DEVEXCL_ARCH is x86_64 (a step not yet done for arm64)
x86_only() {
	[ "$DEVEXCL_ARCH" = x86_64 ] ||
		die "$1" "not available for DEVEXCL_ARCH=$DEVEXCL_ARCH yet (x86_64 only; arm64 builds and boots the test kernels: make check/matrix ARCH=arm64)"
}

# on_target PROGRAM [ARG...]: run a static guest program of DEVEXCL_ARCH on this host
# (arm64: under Debian's qemu-user-static), e.g. to list a suite's tests
on_target() {
	if [ -n "$CROSS" ]; then
		need_tool qemu-aarch64-static qemu-user-static
		qemu-aarch64-static "$@"
	else
		"$@"
	fi
}

# run_name BASE VARIANT THP: the name of a boot's results under $DEVEXCL_OUT/runs/
run_name() {
	echo "$1$ARSUFFIX-$2-thp-$3"
}

# check_flavour: die unless FLAVOUR is test, bench (not for packaging: make bench's kernels
# are measured, not shipped) or one of the loaded base's DEB_FLAVOURS
check_flavour() {
	if [ "$FLAVOUR" = bench ]; then
		case $0 in
		*/6-package/*) die "flavour bench" "FLAVOUR=bench is make bench's release test kernel, which is not packaged; packages are built from: test$(for fl in $DEB_FLAVOURS; do printf ' %s' "${fl%%:*}"; done)" ;;
		esac
		return 0
	fi
	[ "$FLAVOUR" = test ] && return 0
	for fl in $DEB_FLAVOURS; do
		[ "${fl%%:*}" = "$FLAVOUR" ] && return 0
	done
	die "flavour $FLAVOUR" "not a flavour of base $BASE_NAME; valid: test$(for fl in $DEB_FLAVOURS; do printf ' %s' "${fl%%:*}"; done)"
}

# kmake ARG...: make for the kernel tree of the loaded base. A base with BUILD_SUITE is
# built inside that Debian release (ci/host/in-rootfs) with its compiler, whatever the flavour:
# its packages' host programs (linux-headers: fixdep, modpost) must run there, and every
# make on one build directory must see the same compiler (Kconfig records it). A Debian
# flavour names the compiler as Debian's config does (CONFIG_CC_VERSION_TEXT "gcc-10 ..."),
# so that the config records the same compiler.
# It runs at nice 10 (DEVEXCL_BUILD_NICE): a kernel build is throughput work, and what
# ci/check's other lanes run next to it (QEMU guests whose tests time themselves, lint,
# packaging) should not wait behind it.
# With ccache (see use_ccache), make runs with ccache's compiler links first in PATH
# (/usr/lib/ccache: gcc, gcc-N, the cross gcc, as Debian's ccache makes them), in a build
# root too (ccache installed there): CC stays the compiler's own name, so nothing kbuild
# records or a headers package ships names ccache.
kmake() {
	cc=
	if ! tiny_flavour; then
		cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "$(build_dir "$BASE_NAME")/config.debian" 2>/dev/null)
		[ -z "$cc" ] || command -v "$cc" >/dev/null 2>&1 || [ -n "$BUILD_SUITE" ] ||
			die "build $BASE_NAME-$FLAVOUR" "Debian built this config with $cc; install it (apt-get install $cc) or set BUILD_SUITE in bases/$BASE_NAME"
	fi
	_ccp=
	! ccache_vars "$BUILD_SUITE" || _ccp=" ccache"
	if [ -n "$BUILD_SUITE" ]; then
		# (arm64: SUITE's own cross compiler, installed in its root)
		IN_ROOTFS_PACKAGES="${IN_ROOTFS_PACKAGES:-}${CROSS_PKG:+ $CROSS_PKG}$_ccp" \
			nice -n "${DEVEXCL_BUILD_NICE:-10}" sh "$TOP/ci/host/in-rootfs" "$BUILD_SUITE" env "$ccv1" "$ccv2" "$ccv3" make ARCH="$KARCH" ${CROSS:+CROSS_COMPILE="$CROSS"} ${cc:+CC="$cc"} "$@"
	else
		nice -n "${DEVEXCL_BUILD_NICE:-10}" env "$ccv1" "$ccv2" "$ccv3" make ARCH="$KARCH" ${CROSS:+CROSS_COMPILE="$CROSS"} ${cc:+CC="$cc"} "$@"
	fi
}

# use_ccache: whether kernel builds (kmake, ci/6-package/build-rpm) compile through ccache
# (Debian's ccache), so that a rebuild of what an earlier build in the same work directory
# compiled (the next make matrix, release N+1 after N, the same flavour signed with
# another key) takes its objects from the cache. DEVEXCL_CCACHE: auto (the default: when
# ccache is installed on this host; make matrix installs it, CI's cold run does not:
# nothing there to reuse), yes (scripts refuse to start without it, but ci/check and
# install-deps, which install it), no. The cache:
# DEVEXCL_CCACHE_DIR (default $DEVEXCL_CACHE/ccache, under DEVEXCL_CACHE, which the build
# roots see), one directory per build root (each has its own compiler and ccache), at
# most DEVEXCL_CCACHE_SIZE each (default 20G). The compile commands of a build with O=
# name the source tree by its absolute path: another DEVEXCL_WORK starts cold.
use_ccache() {
	case $DEVEXCL_CCACHE in
	no) return 1 ;;
	auto) command -v ccache >/dev/null 2>&1 || return 1 ;;
	yes) need_tool ccache ccache ;;
	esac
	return 0
}

# ccache_vars SUITE: set ccv1, ccv2 and ccv3 to the environment (VAR=VALUE) of a compile on
# this host (SUITE empty) or in SUITE's build root (ci/host/in-rootfs's PATH there): through
# ccache (true) when use_ccache says so, else with ccache disabled (false)
ccache_vars() {
	_ccpath=$PATH
	[ -z "$1" ] || _ccpath=/usr/sbin:/usr/bin:/sbin:/bin
	if ! use_ccache; then
		ccv1=CCACHE_DISABLE=1
		ccv2=DEVEXCL_CCACHE=no
		ccv3=PATH=$_ccpath
		return 1
	fi
	_ccd=$DEVEXCL_CCACHE_DIR/${1:-host}
	{ mkdir -p "$_ccd" 2>/dev/null && [ -w "$_ccd" ]; } ||
		die "ccache" "cannot make or write the cache directory $_ccd (DEVEXCL_CCACHE_DIR; DEVEXCL_CCACHE=no builds without ccache)"
	# (a link out of DEVEXCL_CACHE would not lead anywhere in a build root)
	if ! _ccr=$(CDPATH='' cd -P -- "$_ccd" && pwd) || ! _ccc=$(CDPATH='' cd -P -- "$DEVEXCL_CACHE" && pwd); then
		die "ccache" "cannot resolve $_ccd or $DEVEXCL_CACHE"
	fi
	case $_ccr/ in
	"$_ccc"/?*) ;;
	*) die "ccache" "DEVEXCL_CCACHE_DIR=$DEVEXCL_CCACHE_DIR leads out of DEVEXCL_CACHE=$DEVEXCL_CACHE (a link?): the build roots see only that" ;;
	esac
	ccv1=CCACHE_DIR=$_ccd
	ccv2=CCACHE_MAXSIZE=$DEVEXCL_CCACHE_SIZE
	ccv3=PATH=/usr/lib/ccache:$_ccpath
}

# the ccache settings are checked when a script starts, before any step sends its errors
# into a log (ccache itself, for yes, when a build starts: ci/check and make deps install
# it first)
DEVEXCL_CCACHE=${DEVEXCL_CCACHE:-auto}
DEVEXCL_CCACHE_DIR=${DEVEXCL_CCACHE_DIR:-$DEVEXCL_CACHE/ccache}
DEVEXCL_CCACHE_SIZE=${DEVEXCL_CCACHE_SIZE:-20G}
case $DEVEXCL_CCACHE in
auto | no) ;;
yes) case $0 in */ci/check | */host/install-deps) ;; *) need_tool ccache ccache ;; esac ;;
*) die "ccache" "DEVEXCL_CCACHE=$DEVEXCL_CCACHE: not one of auto, yes, no" ;;
esac
case $DEVEXCL_CCACHE_SIZE in
'' | *[!0-9.kMGTi]*) _ccsz=bad ;;
*) _ccsz=$(echo "$DEVEXCL_CCACHE_SIZE" | grep -Ex '[0-9]+(\.[0-9]+)?([kMGT]i?)?' || echo bad) ;;
esac
[ "$_ccsz" != bad ] ||
	die "ccache" "DEVEXCL_CCACHE_SIZE=$DEVEXCL_CCACHE_SIZE: not a size ccache takes (a number, then k, M, G or T, e.g. 20G)"
case $DEVEXCL_CCACHE_DIR in
"$DEVEXCL_CACHE"/?*) ;;
*) die "ccache" "DEVEXCL_CCACHE_DIR=$DEVEXCL_CCACHE_DIR is not under DEVEXCL_CACHE=$DEVEXCL_CACHE (the build roots see only that)" ;;
esac
case /${DEVEXCL_CCACHE_DIR#"$DEVEXCL_CACHE"/}/ in
*/../* | */./* | *//*) die "ccache" "DEVEXCL_CCACHE_DIR=$DEVEXCL_CCACHE_DIR: give it below DEVEXCL_CACHE without ., .. or empty components" ;;
esac

# the base's own (unpatched) test sources: hmm-tests.c, the harness, test_hmm_uapi.h
stock_tests_dir() {
	echo "$DEVEXCL_WORK/stock-tests/$1"
}

# tree_state BASE: "stock", a series revision, or nothing (no tree)
tree_state() {
	cat "$(tree_dir "$1")/.devexcl-series" 2>/dev/null || true
}

# require_state BASE VARIANT: the tree must be in the state of VARIANT
require_state() {
	st=$(tree_state "$1")
	# (a stock tree has no quilt state: .pc with "stock" is a push that did not finish)
	[ "$st" != stock ] || [ ! -d "$(tree_dir "$1")/.pc" ] || st=
	case $2:$st in
	stock:stock) ;;
	patched:stock | patched:) die "$1-$2" "the tree is not patched; run ci/2-apply/apply $1 patched" ;;
	patched:*) ;;
	*) die "$1-$2" "the tree is not the stock tree (state '${st:-none}'); run ci/2-apply/apply $1 stock" ;;
	esac
}

# apis_of VARIANT: the device-exclusive APIs the loaded base promises for VARIANT
apis_of() {
	if [ "$1" = patched ]; then
		echo "$APIS_PATCHED"
	else
		echo "$APIS_STOCK"
	fi
}

# symvers_apis FILE: the device-exclusive APIs whose symbol FILE (a Module.symvers) lists
# as an export of vmlinux, in the order "range page" (empty: none). range:
# make_device_exclusive_range(), page: make_device_exclusive() (both EXPORT_SYMBOL_GPL).
symvers_apis() {
	awk -F '\t' '$3 == "vmlinux" && $4 ~ /^EXPORT_SYMBOL/ {
		if ($2 == "make_device_exclusive_range") r = 1
		else if ($2 == "make_device_exclusive") p = 1
	} END { printf "%s%s%s\n", r ? "range" : "", r && p ? " " : "", p ? "page" : "" }' "$1"
}

# api_check WHAT FILE PROMISED [NAME]: print the APIs FILE (a Module.symvers) exports, as
# symvers_apis does; die, naming WHAT, when FILE is missing or empty, or its APIs are not
# exactly PROMISED (NAME of the base, by default APIS_PATCHED: range, page, both in any
# order, or none)
api_check() {
	[ -s "$2" ] || die "$1" "$2 is missing or empty: no Module.symvers to read the device-exclusive APIs from"
	for _a in $3; do
		case $_a in range | page) ;; *) die "$1" "unknown device-exclusive API '$_a' promised (${4:-APIS_PATCHED}: range, page)" ;; esac
	done
	_want=
	for _a in range page; do
		case " $3 " in *" $_a "*) _want="${_want:+$_want }$_a" ;; esac
	done
	_found=$(symvers_apis "$2")
	[ "$_found" = "$_want" ] ||
		die "$1" "$2 exports the device-exclusive APIs '${_found:-none}', but the base promises '${_want:-none}' (${4:-APIS_PATCHED}; range: make_device_exclusive_range, page: make_device_exclusive)"
	echo "$_found"
}

# control_add_provides CONTROL VALUE: add VALUE (e.g. "devexcl-api-range,
# devexcl-api-page") to the Provides of CONTROL, a binary package's DEBIAN/control
control_add_provides() {
	if grep -q '^Provides:' "$1"; then
		sed -i "s/^Provides: \(.*\)/Provides: \1, $2/" "$1"
	else
		sed -i "/^Description:/i Provides: $2" "$1"
	fi
}

# kernel_lintian WHAT LOG DEB...: lintian on kernel packages, errors and warnings fail
# (dying, naming WHAT, with the first of them); the tags of debian/kernel.lintian-suppress
# are suppressed, each with its reason there. Informational tags are shown.
kernel_lintian() {
	_kw=$1 _kl=$2
	shift 2
	if ! grep -v '^#' "$TOP/debian/kernel.lintian-suppress" >"$DEVEXCL_WORK/kernel.lintian-suppress" ||
		! lintian --fail-on error,warning --suppress-tags-from-file "$DEVEXCL_WORK/kernel.lintian-suppress" \
			"$@" >"$_kl" 2>&1; then
		grep '^[EW]:' "$_kl" | head -n 20 | sed 's/^/    /' >&2
		die "$_kw" "lintian reports errors or warnings on the kernel packages" "$_kl"
	fi
	if grep -q '^[EWI]:' "$_kl"; then
		info "lintian: informational tags only:"
		grep '^[EWI]:' "$_kl" | sed 's/^/    /'
	fi
	info "lintian clean (log: $_kl)"
}

# deb_add_provides DEB VALUE: control_add_provides on DEB's control file, and DEB rebuilt
# in place (its files stay as they are)
deb_add_provides() {
	_w=$(mktemp -d "${TMPDIR:-/tmp}/deb-provides.XXXXXX") || return 1
	if ! dpkg-deb -R "$1" "$_w/pkg" || ! control_add_provides "$_w/pkg/DEBIAN/control" "$2" ||
		! dpkg-deb --root-owner-group -Zxz -b "$_w/pkg" "$_w/new.deb" >/dev/null ||
		! mv "$_w/new.deb" "$1"; then
		rm -rf "$_w"
		return 1
	fi
	rm -rf "$_w"
}

# cert_name CERT: the name a certificate goes by: its subject's commonName, else its
# organizationName (the snakeoil certificate has no commonName)
cert_name() {
	openssl x509 -in "$1" -noout -subject -nameopt multiline |
		sed -n 's/^ *commonName *= //p; s/^ *organizationName *= //p' | tail -n 1
}

# deb_sign_image DEB PATH KEY CERT: sign the EFI kernel image PATH (relative to /) inside the
# package DEB for UEFI Secure Boot with sbsign (KEY, CERT: PEM), verify it against CERT and
# rebuild DEB with the package's md5sums updated; its last line says what it did. (The
# caller decides from CONFIG_EFI_STUB whether the image is an EFI binary: one that sbsign
# cannot parse is an error, never an unsigned package.)
deb_sign_image() {
	need_tool sbsign sbsigntool
	mkdir -p "$DEVEXCL_WORK/tmp"
	_w=$(mktemp -d "$DEVEXCL_WORK/tmp/deb-sign.XXXXXX") || return 1
	if ! dpkg-deb -R "$1" "$_w/pkg" || [ ! -f "$_w/pkg/$2" ]; then
		echo "deb_sign_image: $1 has no /$2"
		rm -rf "$_w"
		return 1
	fi
	if ! sbsign --key "$3" --cert "$4" --output "$_w/signed" "$_w/pkg/$2" ||
		! sbverify --cert "$4" "$_w/signed" || ! cat "$_w/signed" >"$_w/pkg/$2" ||
		! (cd "$_w/pkg" && sed -i "\| $2\$|d" DEBIAN/md5sums && md5sum "$2" >>DEBIAN/md5sums) ||
		! dpkg-deb --root-owner-group -Zxz -b "$_w/pkg" "$_w/new.deb" >/dev/null ||
		! mv "$_w/new.deb" "$1"; then
		rm -rf "$_w"
		return 1
	fi
	rm -rf "$_w"
	echo "/$2 signed for Secure Boot by '$(cert_name "$4")'"
}

# is_elf FILE: 0 when FILE starts with the ELF magic
is_elf() {
	[ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]
}

# copy_libs BIN ROOT: copy the shared libraries BIN links (ldd's absolute paths, the
# dynamic loader among them) from this host to the same paths under ROOT; fails when one
# cannot be copied
copy_libs() {
	for _lib in $(ldd "$1" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u); do
		mkdir -p "$2$(dirname "$_lib")" && cp -L "$_lib" "$2$_lib" || return 1
	done
}

# module_plain KO OUT: the module KO, decompressed when it is .ko.xz/.zst/.gz (Debian 13
# compresses its modules), into OUT
module_plain() {
	case $1 in
	*.xz) xz -dc "$1" >"$2" ;;
	*.zst) zstd -qdc "$1" >"$2" ;;
	*.gz) gzip -dc "$1" >"$2" ;;
	*) cp "$1" "$2" ;;
	esac
}

# module_sig_len KO: the length of the PKCS#7 signature appended to the (uncompressed)
# module KO (struct module_signature's sig_len, big-endian, before the 28-byte magic);
# fails when KO carries none. The module's own contents are its first
# size - 40 - sig_len bytes (12 bytes of struct, 28 of magic).
module_sig_len() {
	_sz=$(stat -c %s "$1")
	[ "$_sz" -gt 40 ] && [ "$(tail -c 28 "$1")" = "~Module signature appended~" ] || return 1
	# shellcheck disable=SC2046 # (the four bytes of sig_len, one word each)
	set -- "$1" $(tail -c 32 "$1" | head -c 4 | od -An -tu1)
	_n=$(($2 * 16777216 + $3 * 65536 + $4 * 256 + $5))
	[ "$_n" -gt 0 ] && [ "$_n" -lt $((_sz - 40)) ] || return 1
	echo "$_n"
}

# signed_by KO CERT: 0 when the (uncompressed) module KO carries an appended signature that
# verifies, over the module's contents, with the public key of CERT (PKCS#7 as
# scripts/sign-file makes it; the certificate chain is not checked: CERT is the key)
signed_by() {
	_n=$(module_sig_len "$1") || return 1
	_sz=$(stat -c %s "$1")
	_d=$(mktemp -d "${TMPDIR:-/tmp}/signed-by.XXXXXX") || return 1
	head -c $((_sz - 40 - _n)) "$1" >"$_d/body"
	tail -c $((40 + _n)) "$1" | head -c "$_n" >"$_d/sig"
	openssl cms -verify -binary -inform DER -in "$_d/sig" -content "$_d/body" \
		-certfile "$2" -nointern -noverify -out /dev/null >/dev/null 2>&1
	_r=$?
	rm -rf "$_d"
	return $_r
}

# rpm_kernel_name: the kernel RPM's package name for FLAVOUR (specs/kernel-devexcl.spec):
# kernel-devexcl for the test config, kernel-devexcl-<flavour> for a Debian flavour's
rpm_kernel_name() {
	if [ "$FLAVOUR" = test ]; then echo kernel-devexcl; else echo "kernel-devexcl-$FLAVOUR"; fi
}

# stop_gpg_agents DIR: stop the gpg-agent daemons dnf's signature checks started for
# keyrings below DIR (dnf leaves one running per repository cache it checked)
stop_gpg_agents() {
	find "$1" -type d -name pubring 2>/dev/null | while read -r _h; do
		gpgconf --homedir "$_h" --kill gpg-agent 2>/dev/null || true
	done
}

# bench_clock_args: the x86_64 bench guests' clock arguments (ci/bench says why):
# tsc=reliable and, when the host kernel's log has it, tsc_early_khz=<the host's TSC kHz>
bench_clock_args() {
	_khz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9]*\)\.\([0-9][0-9][0-9]\) MHz.*/\1\2/p' | tail -n 1)
	[ -n "$_khz" ] ||
		_khz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9]*\)\.\([0-9][0-9][0-9]\) MHz.*/\1\2/p' | tail -n 1)
	[ -n "$_khz" ] ||
		info "the host's TSC frequency is not in its kernel log (dmesg): the guests calibrate their own (a busy host may leave them on jiffies)" >&2
	echo "tsc=reliable${_khz:+ tsc_early_khz=$_khz}"
}

# rpm_krel RPM: the kernel release a kernel RPM provides (kernel-uname-r); empty if none
rpm_krel() {
	rpm -qp --provides "$1" 2>/dev/null | sed -n 's/^kernel-uname-r = //p'
}

# module_sig_pem DEST WHAT: write the vendor key and its certificate
# (ci/6-package/signing-key) into one PEM file DEST (mode 600), as CONFIG_MODULE_SIG_KEY
# takes them; DEST is outside any build tree (nothing packaged from one may carry the key)
# and its maker removes it once the modules are packaged. WHAT names the step in errors.
module_sig_pem() {
	_kc=$(sh "$TOP/ci/6-package/signing-key") || return 1
	# (each step checked: callers run this before ||, where set -e does not act)
	{ mkdir -p "$(dirname -- "$1")" && chmod 700 "$(dirname -- "$1")"; } ||
		die "$2" "cannot make $(dirname -- "$1") (mode 700) for the signing key"
	# (rewritten by openssl: a key file without a final newline would run into the certificate)
	if ! (umask 077 && { openssl pkey -in "${_kc% *}" && openssl x509 -in "${_kc#* }"; } >"$1.tmp") ||
		! mv "$1.tmp" "$1"; then
		rm -f "$1.tmp"
		die "$2" "cannot write $1"
	fi
	info "modules will be signed with $(openssl x509 -in "${_kc#* }" -noout -subject)"
}

# debian_flavour_config DEST WHAT LOG: Debian's own config of FLAVOUR for the loaded base:
# the .config of its linux-headers-<DEB_ABI>-<FLAVOUR> package of the same version
# (APT_VERSION), downloaded once into $DEVEXCL_CACHE/debian-kernels and checked against
# the sha256 bases/<base> pins (DEB_FLAVOURS), copied to DEST. WHAT names the step in
# errors; LOG gets apt's output.
debian_flavour_config() {
	_sha=
	for _fl in $DEB_FLAVOURS; do
		[ "${_fl%%:*}" = "$FLAVOUR" ] && _sha=${_fl#*:}
	done
	[ -n "$_sha" ] || die "$2" "FLAVOUR=$FLAVOUR is not one of the DEB_FLAVOURS of bases/$BASE_NAME"
	_pkg=linux-headers-$DEB_ABI-$FLAVOUR
	_dl=$DEVEXCL_CACHE/debian-kernels
	_deb=$_dl/${_pkg}_${APT_VERSION}_amd64.deb
	mkdir -p "$_dl" || die "$2" "cannot make $_dl"
	if [ ! -f "$_deb" ] || [ "$(sha256sum "$_deb" | cut -d' ' -f1)" != "$_sha" ]; then
		step "fetching Debian's $FLAVOUR config: $_pkg $APT_VERSION"
		(APT_CONFIG=$(sh "$TOP/ci/host/apt-setup") && export APT_CONFIG &&
			cd "$_dl" && apt-get download "$_pkg=$APT_VERSION") >>"$3" 2>&1 ||
			die "$2" "$_pkg $APT_VERSION is not downloadable from the Debian archive in apt sources" "$3"
		_got=$(sha256sum "$_deb" | cut -d' ' -f1)
		[ "$_got" = "$_sha" ] || die "$2" "$_pkg: sha256 $_got, bases/$BASE_NAME pins $_sha"
	fi
	{ mkdir -p "$DEVEXCL_WORK/tmp" && _x=$(mktemp -d "$DEVEXCL_WORK/tmp/flavour-config.XXXXXX"); } ||
		die "$2" "cannot make a temporary directory in $DEVEXCL_WORK/tmp"
	if ! dpkg-deb --fsys-tarfile "$_deb" | tar -xf - -C "$_x" "./usr/src/$_pkg/.config"; then
		rm -rf "$_x"
		die "$2" "no .config in $_pkg"
	fi
	# (checked: callers run this before ||, where set -e does not act)
	if ! mv "$_x/usr/src/$_pkg/.config" "$1"; then
		rm -rf "$_x"
		die "$2" "cannot write $1"
	fi
	rm -rf "$_x"
}

# hmm_tests_subdir TREE: the selftests directory holding hmm-tests.c (vm or mm)
hmm_tests_subdir() {
	for d in mm vm; do
		if [ -f "$1/tools/testing/selftests/$d/hmm-tests.c" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

series_file() {
	echo "$TOP/series/$1.series"
}

# debian_kernel_base SUITE: the base of Debian's own kernel of that release (bases/debianN-kernel)
debian_kernel_base() {
	case $1 in
	bullseye) echo debian11-kernel ;;
	bookworm) echo debian12-kernel ;;
	trixie) echo debian13-kernel ;;
	*) return 1 ;;
	esac
}

# release_number: the release counter in the packages' versions (<base version>-devexcl.r<N>+<series
# rev>): the number of commits of this repository (git rev-list --count HEAD), which only
# grows along its history, so a package built from a later commit has a higher version and
# apt upgrades to it; the series revision alone (a hash) does not order releases.
# DEVEXCL_RELEASE=<N> overrides it (a source tree without its git history, a rebuild).
release_number() {
	if [ -n "${DEVEXCL_RELEASE:-}" ]; then
		case $DEVEXCL_RELEASE in
		*[!0-9]*) die "release" "DEVEXCL_RELEASE must be a number (the release counter), not '$DEVEXCL_RELEASE'" ;;
		esac
		echo "$DEVEXCL_RELEASE"
		return 0
	fi
	git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1 ||
		die "release" "$TOP is not a git checkout: its packages need a release number that grows from release to release; set DEVEXCL_RELEASE=<number>"
	[ "$(git -C "$TOP" rev-parse --is-shallow-repository)" = false ] ||
		die "release" "$TOP is a shallow clone: its commit count is not the release number (git fetch --unshallow, or set DEVEXCL_RELEASE=<number>)"
	git -C "$TOP" rev-list --count HEAD
}

# series_rev SERIES: short content hash of the series and its patches
series_rev() {
	sf=$(series_file "$1")
	{
		cat "$sf"
		grep -v '^[[:space:]]*#' "$sf" | while read -r p _; do
			[ -n "$p" ] && cat "$TOP/patches/$p"
		done
	} | sha256sum | cut -c1-12
}

# apt_need WHAT PACKAGE: install the Debian PACKAGE a step (WHAT) needs, as root, after
# apt-get update (log: $DEVEXCL_OUT/logs/install-PACKAGE.log; progress on stderr)
apt_need() {
	[ "$(id -u)" -eq 0 ] || die "$1" "needs the Debian package $2: apt-get install --no-install-recommends $2 (as root)"
	_log=$DEVEXCL_OUT/logs/install-$2.log
	mkdir -p "$DEVEXCL_OUT/logs"
	printf '==> installing %s (%s)\n' "$2" "$(elapsed)" >&2
	# (one apt at a time on the host: ci/check's lanes may need packages at once)
	mkdir -p "$DEVEXCL_WORK/locks"
	# shellcheck disable=SC2016 # ($1 is the inner shell's)
	flock -o -w 1800 "$DEVEXCL_WORK/locks/host-apt" sh -c 'apt-get update &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1"' sh "$2" >"$_log" 2>&1 ||
		die "$1" "apt-get install $2 failed" "$_log"
}

# hold_lock FILE WHAT: hold an exclusive lock on FILE (flock, on file descriptor 9) until
# this process and the children that inherit it end, waiting while another step holds it.
# ci/check runs lanes at once: steps that share the private apt indexes (ci/host/apt-setup)
# or a Debian root file system (ci/host/rootfs, ci/host/in-rootfs) take turns this way.
hold_lock() {
	command -v flock >/dev/null 2>&1 || die "lock $2" "flock is missing: install the Debian package util-linux"
	mkdir -p "$(dirname "$1")"
	exec 9>>"$1"
	if ! flock -n 9; then
		printf '    waiting for %s: another step of this run holds it (%s)\n' "$2" "$(elapsed)" >&2
		flock 9 || die "lock $2" "flock $1 failed"
	fi
}

# apt_file_uri {source|binary} PACKAGE=VERSION FILE LOG: "URI SHA256:<sha>" of FILE of
# that source package (apt-get source --print-uris) or binary package (apt-get download
# --print-uris) in the indexes of $APT_CONFIG (ci/host/apt-setup); nothing when they list
# no such file. apt's output is appended to LOG.
apt_file_uri() {
	{ mkdir -p "$DEVEXCL_WORK/tmp" && _au=$(mktemp -d "$DEVEXCL_WORK/tmp/apt-uri.XXXXXX"); } ||
		die "apt_file_uri" "cannot make a temporary directory in $DEVEXCL_WORK/tmp"
	case $1 in
	source) (cd "$_au" && apt-get source --print-uris --only-source "$2") >"$_au/out" 2>&1 || true ;;
	binary) (cd "$_au" && apt-get download --print-uris "$2") >"$_au/out" 2>&1 || true ;;
	*) rm -rf "$_au"; die "apt_file_uri" "unknown package kind '$1' (source or binary)" ;;
	esac
	cat "$_au/out" >>"$4"
	# (apt's line of FILE: 'URI' FILE SIZE SHA256:<sha>)
	awk -v f="$3" '$2 == f { gsub(/'"'"'/, "", $1); print $1, $4; exit }' "$_au/out"
	rm -rf "$_au"
}

# abs_url WHAT NAME VALUE: VALUE without a trailing /; an error naming the setting NAME
# when it is not an absolute http(s) or file:/// URL (call as x=$(abs_url ...) || exit 1)
abs_url() {
	case $3 in
	https://* | http://* | file:///*) echo "${3%/}" ;;
	*) die "$1" "$2 '$3' is not an absolute http(s) or file:/// URL" ;;
	esac
}

# record {pass|fail|skip} NAME [NOTE]: one pipeline check result for ci/7-report/report
record() {
	mkdir -p "$DEVEXCL_OUT"
	printf '%s %s %s\n' "$1" "$2" "${3:-}" >>"$DEVEXCL_OUT/checks.txt"
}

# git_state: "commit=<sha>" and "dirty=yes|no" of this checkout (uncommitted changes to
# tracked files; untracked files do not count), the lines a published page's meta file
# carries (ci/7-report/publish-results refuses a dirty run). When git cannot tell (not a
# checkout, or one it refuses: another owner), commit=unknown and dirty=yes.
git_state() {
	_gc=$(git -c safe.directory="$TOP" -C "$TOP" rev-parse HEAD 2>/dev/null) || _gc=unknown
	echo "commit=$_gc"
	if _gs=$(git -c safe.directory="$TOP" -C "$TOP" status --porcelain --untracked-files=no 2>/dev/null) &&
		[ "$_gc" != unknown ] && [ -z "$_gs" ]; then
		echo "dirty=no"
	else
		echo "dirty=yes"
	fi
}

# forget_records NAME: remove the records of check NAME and of NAME:<anything> from
# checks.txt (a check that is run again replaces what its last run recorded)
forget_records() {
	[ -f "$DEVEXCL_OUT/checks.txt" ] || return 0
	awk -v n="$1" '$2 != n && index($2, n ":") != 1' "$DEVEXCL_OUT/checks.txt" >"$DEVEXCL_OUT/checks.txt.new"
	mv "$DEVEXCL_OUT/checks.txt.new" "$DEVEXCL_OUT/checks.txt"
}

# checks_mark: how many records checks.txt has now (for checks_summary)
checks_mark() {
	if [ -f "$DEVEXCL_OUT/checks.txt" ]; then wc -l <"$DEVEXCL_OUT/checks.txt"; else echo 0; fi
}

# checks_summary MARK: the records written since checks_mark said MARK: each failure, then
# "N passed, N failed"; false when one failed
checks_summary() {
	_mine=$(tail -n "+$(($1 + 1))" "$DEVEXCL_OUT/checks.txt" 2>/dev/null || true)
	_np=$(echo "$_mine" | grep -c '^pass ' || true)
	_nf=$(echo "$_mine" | grep -c '^fail ' || true)
	echo "$_mine" | grep '^fail ' | sed 's/^/    /' || true
	echo "$_np passed, $_nf failed"
	[ "$_nf" -eq 0 ]
}

# phase NAME: a line "END SECONDS LANE:NAME" in phases.txt at the end of phase NAME of a
# run (ci/check, and the scripts it runs that write phases: ci/6-package/deploy-test): its
# end (seconds since the start of the run, DEVEXCL_T0) and its length (since the lane's
# previous phase ended, phase_prev; at first since this script started); ci/7-report/report
# prints them. Lanes run at once, so the lengths add up to more than the run took: its
# time is the last END.
lane_name=${lane_name:-}
phase_prev=$(($(date +%s) - DEVEXCL_T0))
phase() {
	_end=$(($(date +%s) - DEVEXCL_T0))
	printf '%s %s %s%s\n' "$_end" "$((_end - phase_prev))" "${lane_name:+$lane_name:}" "$1" >>"$DEVEXCL_OUT/phases.txt"
	phase_prev=$_end
}

# pkgtry NAME NOTE COMMAND...: run a packaging step, record it; 1 when it failed
pkgtry() {
	n=$1
	note=$2
	shift 2
	if run_step "$@"; then
		record pass "$n" "$note"
		return 0
	fi
	record fail "$n" "$step_why"
	return 1
}

# has_record STATUS NAME: checks.txt has check NAME (the whole name) with STATUS
has_record() {
	awk -v s="$1" -v n="$2" '$1 == s && $2 == n { f = 1 } END { exit !f }' "$DEVEXCL_OUT/checks.txt" 2>/dev/null
}

# pin_release: DEVEXCL_RELEASE set and exported to the release number (release_number: the
# commit count), once for a run that builds for hours (make matrix, make deploy-test): a
# commit made meanwhile must not give one run's packages two numbers (configure's kernel
# release and build-deb's version read it each); when it cannot be known here, each
# packaging step says why
pin_release() {
	# (its error, when it has one, is not this run's: no DEVEXCL_ERRFILE)
	if [ -z "${DEVEXCL_RELEASE:-}" ] && _rn=$(DEVEXCL_ERRFILE="" release_number_quiet); then
		DEVEXCL_RELEASE=$_rn
		export DEVEXCL_RELEASE
	fi
}

release_number_quiet() {
	release_number 2>/dev/null
}

# flavour_debs BASE FLAVOUR [VAR=VALUE...]: BASE's patched kernel packages in Debian's
# FLAVOUR config (VAR=VALUE: more environment for the steps)
flavour_debs() {
	_fb=$1
	_ff=$2
	shift 2
	for _fs in 2-apply/apply 3-configure/configure 4-build/build-kernel; do
		env FLAVOUR="$_ff" "$@" sh "$TOP/ci/$_fs" "$_fb" patched || return 1
	done
	env FLAVOUR="$_ff" "$@" sh "$TOP/ci/6-package/build-deb" "$_fb"
}

# signing_copy: configure's copy of the vendor key and certificate for a Debian flavour's
# module signing (its .config's MODULE_SIG_KEY; ci/lib.sh module_sig_pem), read by the
# kernel build and by packaging (modules_install signs). It lives from configure to the end
# of packaging (ci/6-package/build-deb removes it), and configure, build-kernel and
# build-deb remove it when they fail or are stopped by a signal they can catch
# (drop_signing_copy_on_failure): a vendor's private key is not left in a work directory
# (a CI cache, a tarball for a bug report). SIGKILL leaves it, until the next build-deb.
signing_copy() {
	echo "$DEVEXCL_WORK/signing/$BASE_NAME$FLSUFFIX$BUILD_TAG.pem"
}

# drop_signing_copy_on_failure: an EXIT trap for the steps that read the copy (configure,
# build-kernel, build-deb; set right after load_base, before any check that can fail):
# removes it when the step exits non-zero. HUP (a closed ssh session), INT, QUIT, TERM
# and PIPE exit through it (129, 130, 131, 143, 141), once the command running then has
# ended (at a terminal it got the signal too; a signal sent to the script alone waits for
# it). A signal ignored when the script started (SIGINT in a background job of a
# non-interactive shell) cannot be caught, and does not stop the step either.
drop_signing_copy_on_failure() {
	trap '_rc=$?; [ "$_rc" -eq 0 ] || rm -f "$(signing_copy)" "$(signing_copy).tmp"; exit "$_rc"' EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 131' QUIT
	trap 'exit 141' PIPE
	trap 'exit 143' TERM
}

# need_signing_copy WHAT OUT: for a build directory OUT whose .config signs modules with
# configure's copy of the key (signing_copy), die naming the cause when the copy is gone
# (a failed or interrupted step removed it; make deb configures again)
need_signing_copy() {
	_sk=$(sed -n 's/^CONFIG_MODULE_SIG_KEY="\(.*\)"$/\1/p' "$2/.config" 2>/dev/null)
	[ "$_sk" = "$(signing_copy)" ] || return 0
	[ -f "$_sk" ] ||
		die "$1" "the copy of the signing key its .config names ($_sk) is gone (build-deb removes it after packaging, a failed or interrupted step removes it): run ci/3-configure/configure again (make deb does)"
}

# image_debs DIR: the kernel image packages make deb put in DIR, one a line
# (linux-image-<release>_*.deb; not the -dbg package, nor the metapackages)
image_debs() {
	find "$1" -maxdepth 1 -name 'linux-image-[0-9]*.deb' ! -name '*-dbg_*' 2>/dev/null
}

# upgrade_next_stamp OUT NAME: one hash of what release N's packages in OUT were built
# from, as far as release N+1 of the same tree depends on it (ci/6-package/upgrade-test-deb
# keeps N+1 between runs while it matches): the kernel package's name and version (base,
# release number, series revision), the kernel's config in it, and the certificate of the
# signing key in the certificate package. Not the packages' bytes: each make deb gives
# new ones (dates, signatures) from the same inputs.
upgrade_next_stamp() {
	_img=$(image_debs "$1/deb/$2")
	_crt=$(find "$1/deb/cert" -maxdepth 1 -name 'devexcl-signing-cert_*.deb' 2>/dev/null)
	[ -n "$_img" ] && [ -n "$_crt" ] || return 1
	[ "$(printf '%s\n' "$_img" | wc -l)" -eq 1 ] && [ "$(printf '%s\n' "$_crt" | wc -l)" -eq 1 ] || return 1
	_t=$(mktemp) || return 1
	if dpkg-deb -f "$_img" Package Version >"$_t" 2>/dev/null &&
		dpkg-deb --fsys-tarfile "$_img" 2>/dev/null | tar -xOf - --wildcards './boot/config-*' >>"$_t" 2>/dev/null &&
		dpkg-deb --fsys-tarfile "$_crt" 2>/dev/null |
		tar -xOf - ./usr/share/devexcl-signing-cert/devexcl-signing.der >>"$_t" 2>/dev/null; then
		sha256sum <"$_t" | cut -c1-16
		rm -f "$_t"
	else
		rm -f "$_t"
		return 1
	fi
}

# upgrade_next_built NEXT_OUT NAME STAMP: record in NEXT_OUT that its release N+1 of NAME
# was built from the release N upgrade_next_stamp gave STAMP for (taken before the build)
upgrade_next_built() {
	echo "$3" >"$1/.built-from"
}

# upgrade_next_kept NEXT_OUT NAME N1 REV STAMP: whether NEXT_OUT holds release N1 (series
# revision REV) of NAME as ci/6-package/upgrade-test-deb builds it (the one linux-image
# package, its ABI report against N, a certificate package), built from the release N
# upgrade_next_stamp gives STAMP for (as upgrade_next_built recorded it):
# N rebuilt at the same release number with another key, config or base needs its N+1
# rebuilt too
upgrade_next_kept() {
	_img=$(image_debs "$1/deb/$2")
	[ -n "$_img" ] && [ "$(echo "$_img" | wc -l)" -eq 1 ] || return 1
	case $(dpkg-deb -f "$_img" Version 2>/dev/null) in *"-devexcl.r$3+$4") ;; *) return 1 ;; esac
	[ -f "$1/abi/$2-vs-previous.json" ] && ls "$1"/deb/cert/*.deb >/dev/null 2>&1 || return 1
	[ -n "$5" ] && [ "$(cat "$1/.built-from" 2>/dev/null)" = "$5" ]
}

# rpm_next_inputs BASE: one hash of what ci/6-package/upgrade-test-rpm's release N+1 of
# BASE's RPMs is built from besides the series (whose revision is in its release): the
# spec, the test config, build-rpm and the base's file (its tarball, its Debian patches):
# a rebuild when any of it changed
rpm_next_inputs() {
	(cd "$TOP" && cat specs/kernel-devexcl.spec configs/feature.config configs/test-debug.config \
		configs/test-debug-x86_64.config ci/6-package/build-rpm "bases/$1") | sha256sum | cut -c1-16
}

# rpm_next_kept DIR VERSION N1 REV INPUTS: whether DIR holds release N1 (series revision
# REV) of the kernel RPMs of version VERSION (release N's: a Debian base such as debian11
# moves to Debian's next kernel under the same name) built from INPUTS (rpm_next_inputs,
# recorded in DIR/.inputs)
rpm_next_kept() {
	find "$1" -maxdepth 1 -name "kernel-devexcl-$2-$3.devexcl.$4.*.rpm" 2>/dev/null | grep -q . &&
		[ "$(cat "$1/.inputs" 2>/dev/null)" = "$5" ]
}

# xgpu_source_tar DIR: the sources of xgpu/ (no build outputs) as a tar on stdout, under
# the directory name DIR: what the .deb and RPM builds start from
xgpu_source_tar() {
	(cd "$TOP" && tar --transform "s,^xgpu,$1," --exclude='*.o' --exclude='*.a' --exclude='*.ko' \
		--exclude=xgpu/user/xgpu --exclude='*.cmd' --exclude='*.mod*' --exclude=xgpu_config.h \
		--exclude=xgpu_config.log --exclude=Module.symvers --exclude=modules.order -cf - xgpu)
}

# bind_into ROOT DIR...: bind-mount each DIR at the same path inside ROOT (creating it
# there), remembered in $mounted for unbind_all; a DIR already mounted there is left alone.
mounted=
bind_into() {
	_root=$1
	shift
	for _d in "$@"; do
		mkdir -p "$_d" "$_root$_d"
		if ! mountpoint -q "$_root$_d"; then
			mount --bind "$_d" "$_root$_d" ||
				die "chroot $_root" "cannot bind-mount $_d (needs root and mount privileges)"
			mounted="$_root$_d $mounted"
		fi
	done
}

# unbind_all: undo bind_into, innermost first (for an EXIT trap)
unbind_all() {
	for _m in $mounted; do
		umount "$_m" 2>/dev/null || umount -l "$_m" 2>/dev/null || true
	done
	mounted=
}

# remove_tree DIR...: rm -rf that never reaches through a mount: whatever is still mounted
# under DIR (a bind mount of /dev left by an interrupted chroot step) is unmounted first,
# and DIR is refused if that fails; rm stays on DIR's own file system.
remove_tree() {
	for _t in "$@"; do
		[ -e "$_t" ] || continue
		_t=$(CDPATH='' cd -- "$_t" && pwd -P)
		# shellcheck disable=SC2013 # (mount points here have no blanks)
		for _m in $(awk -v t="$_t/" 'index($2 "/", t) == 1 { print $2 }' /proc/mounts | sort -r); do
			umount "$_m" 2>/dev/null || umount -l "$_m" 2>/dev/null || true
		done
		if awk -v t="$_t/" 'index($2 "/", t) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
			die "remove $_t" "something is still mounted under it (see /proc/mounts); not removing"
		fi
		rm -rf --one-file-system "$_t"
	done
}

# guest_cmdline: the kernel command line's console part for DEVEXCL_ARCH: the console,
# the KTAP port ci/guest/init writes to, and on x86_64 the two fake NUMA nodes (arm64's
# come from QEMU's -numa, in qemu_guest)
guest_cmdline() {
	if [ "$DEVEXCL_ARCH" = arm64 ]; then
		echo "console=ttyAMA0 devexcl.ktap=hvc0"
	else
		echo "console=ttyS0 numa=fake=2"
	fi
}

# guest_slot: wait for a free guest slot and hold it on file descriptor 8 (QEMU inherits it;
# guest_slot_free closes it). ci/check's lanes boot at once (the main lane's boot lanes, a
# Debian kernel, LAVA, an install test): more TCG guests than CPUs would slow each one, and
# their tests time themselves (xgpu's bounds, per-test timeouts, hung-task reports).
# DEVEXCL_GUEST_SLOTS slots, by default as many as DEVEXCL_BOOT_LANES (2 with 2+ CPUs).
guest_slot() {
	_n=${DEVEXCL_GUEST_SLOTS:-${DEVEXCL_BOOT_LANES:-$([ "$JOBS" -ge 2 ] && echo 2 || echo 1)}}
	case $_n in '' | *[!0-9]* | 0) die "guest slots" "DEVEXCL_GUEST_SLOTS must be a number of 1 or more, not '$_n'" ;; esac
	command -v flock >/dev/null 2>&1 || die "guest slots" "flock is missing: install the Debian package util-linux"
	mkdir -p "$DEVEXCL_WORK/locks"
	_said=
	while :; do
		_i=1
		while [ "$_i" -le "$_n" ]; do
			exec 8>>"$DEVEXCL_WORK/locks/guest-slot-$_i"
			flock -n 8 && return 0
			exec 8>&-
			_i=$((_i + 1))
		done
		[ -n "$_said" ] || printf '    waiting for a guest slot: %s guests run (%s)\n' "$_n" "$(elapsed)" >&2
		_said=1
		sleep 2
	done
}

guest_slot_free() {
	exec 8>&-
}

# qemu_guest RUN LIMIT QEMU-ARGS...: boot a test guest of DEVEXCL_ARCH under QEMU, TCG
# unless DEVEXCL_ACCEL says otherwise (/dev/kvm exists here but KVM guests hang), 2 CPUs,
# 2 GiB, no display, for at most LIMIT seconds. x86_64: qemu-system-x86_64, console ttyS0,
# KTAP on ttyS1. arm64: qemu-system-aarch64 -M virt -cpu max, console ttyAMA0 (its one
# UART), KTAP on a virtio console (hvc0), two NUMA nodes of 1 GiB with a CPU each. The
# console goes to RUN/console.log, the KTAP to RUN/ktap.txt, both with CRLF turned into
# LF; QEMU's own output to RUN/qemu.log; boot_seconds is added to RUN/meta (from when it got
# its guest slot). Returns QEMU's exit status (124 or 137: LIMIT passed).
# x86_64 guests get their 2 CPUs as 2 sockets: the test kernels have no ACPI, and the MP
# table of QEMU's SeaBIOS names one CPU per socket, so a plain "-smp 2" (1 socket, 2 cores
# since QEMU 6.2) booted them with 1 CPU (every x86_64 run until 2026-12-06). The guest
# reports the CPUs it brought up ("# cpus:" in its KTAP header) and ci/5-boot/boot fails a
# run that had fewer than GUEST_CPUS.
GUEST_CPUS=2
qemu_guest() {
	_run=$1
	_limit=$2
	shift 2
	: >"$_run/console.log"
	: >"$_run/ktap.txt"
	if [ "$DEVEXCL_ARCH" = arm64 ]; then
		need_tool qemu-system-aarch64 qemu-system-arm
		# (pauth-impdef: TCG's fast pointer-authentication algorithm, not QARMA)
		set -- qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on \
			-object memory-backend-ram,id=mem0,size=1024M -object memory-backend-ram,id=mem1,size=1024M \
			-numa node,nodeid=0,cpus=0,memdev=mem0 -numa node,nodeid=1,cpus=1,memdev=mem1 \
			-smp "$GUEST_CPUS" -serial "file:$_run/console.log" -device virtio-serial-pci \
			-chardev "file,id=ktap,path=$_run/ktap.txt" -device virtconsole,chardev=ktap "$@"
	else
		need_tool qemu-system-x86_64 qemu-system-x86
		set -- qemu-system-x86_64 -vga none -smp "$GUEST_CPUS,sockets=$GUEST_CPUS" \
			-serial "file:$_run/console.log" -serial "file:$_run/ktap.txt" "$@"
	fi
	guest_slot
	_t0=$(date +%s)
	set +e
	_q=$1
	shift
	timeout -k 10 "$_limit" "$_q" -accel "${DEVEXCL_ACCEL:-tcg}" -m 2048 \
		-display none -monitor none -no-reboot "$@" >"$_run/qemu.log" 2>&1
	_rc=$?
	set -e
	guest_slot_free
	echo "boot_seconds=$(($(date +%s) - _t0))" >>"$_run/meta"
	for _f in "$_run/console.log" "$_run/ktap.txt"; do
		tr -d '\r' <"$_f" >"$_f.tmp" && mv "$_f.tmp" "$_f"
	done
	return $_rc
}

# guest_reports RUN WHAT: 0 when RUN/console.log has no kernel report (BUG, WARNING,
# lockdep, KASAN...: ci/5-boot/scan-log); otherwise 1, after an error naming WHAT and the log,
# with the first 20 report lines, on stderr. The reports are kept in RUN/splats.txt.
guest_reports() {
	sh "$TOP/ci/5-boot/scan-log" "$1/console.log" >"$1/splats.txt" || true
	[ -s "$1/splats.txt" ] || return 0
	printf 'error: %s: kernel reports in the guest log (log: %s):\n' "$2" "$1/console.log" >&2
	head -n 20 "$1/splats.txt" | sed 's/^/    /' >&2
	[ -z "${DEVEXCL_ERRFILE:-}" ] ||
		printf '%s: kernel reports in the guest log, the first: %s (log: %s)\n' "$2" \
			"$(head -n 1 "$1/splats.txt")" "$1/console.log" >>"$DEVEXCL_ERRFILE" || true
	return 1
}

# shadow_standins ROOT: kmod-xgpu's %pre makes the group xgpu with shadow-utils (getent
# group || groupadd -r; Requires(pre): shadow-utils), which an empty --root lacks, and so
# does Debian's busybox-static: an /etc/group and two shell stand-ins for them in ROOT, so
# that %pre runs (and its group can be checked in ROOT/etc/group); and the /dev/null its
# getent writes to (without it the redirection fails, and %pre runs groupadd for a group
# that is there: an upgrade's second kmod-xgpu failed so)
shadow_standins() {
	mkdir -p "$1/etc" "$1/usr/bin" "$1/usr/sbin" "$1/dev"
	[ -c "$1/dev/null" ] || mknod -m 666 "$1/dev/null" c 1 3
	echo 'root:x:0:' >"$1/etc/group"
	# (plain sh: the root has no grep or wc, only busybox as /bin/sh)
	# shellcheck disable=SC2016 # (the stand-ins' own arguments)
	printf '#!/bin/sh\n[ "$1" = group ] || exit 2\nwhile IFS=: read -r n _; do [ "$n" = "$2" ] && exit 0; done </etc/group\nexit 2\n' \
		>"$1/usr/bin/getent"
	# shellcheck disable=SC2016
	printf '#!/bin/sh\n[ "$1" = -r ] && shift\ng=990\nwhile IFS=: read -r n _; do [ "$n" = "$1" ] && exit 9; g=$((g - 1)); done </etc/group\necho "$1:x:$g:" >>/etc/group\n' \
		>"$1/usr/sbin/groupadd"
	chmod 755 "$1/usr/bin/getent" "$1/usr/sbin/groupadd"
}
