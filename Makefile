# devexcl front door: targets call ci/ scripts, the scripts hold the logic.
# BASE names a file in bases/ (make bases lists them).

DEFAULT_BASE := 5.10.223
BASE ?=
# make deb without BASE and FLAVOUR (README's main command): Debian 11's kernel with
# Debian's cloud-amd64 config + the series and the feature (README: Packages); with
# ARCH=arm64 (no Debian arm64 config is pinned): the test flavour of $(DEFAULT_BASE)
DEB_DEFAULT_BASE := debian11
DEB_DEFAULT_FLAVOUR := cloud-amd64
ifeq ($(origin FLAVOUR)$(BASE)$(if $(filter command line,$(origin ARCH)),$(filter arm64 aarch64,$(ARCH))),undefined)
deb: BASE := $(DEB_DEFAULT_BASE)
deb: FLAVOUR := $(DEB_DEFAULT_FLAVOUR)
repo: BASE := $(DEB_DEFAULT_BASE)
repo: FLAVOUR := $(DEB_DEFAULT_FLAVOUR)
upgrade-test: BASE := $(DEB_DEFAULT_BASE)
upgrade-test: FLAVOUR := $(DEB_DEFAULT_FLAVOUR)
endif
# ARCH=arm64 (make check/matrix/kernel): the test kernels of that architecture only
# (cross-built, booted under qemu-system-aarch64); make matrix without ARCH: x86_64 and
# arm64, make check without ARCH: x86_64 (ci/check, DEVEXCL_ARCHES)
ifeq ($(origin ARCH),command line)
export DEVEXCL_ARCH := $(ARCH)
export DEVEXCL_ARCHES := $(ARCH)
endif
# SIGN_KEY=<PEM key> SIGN_CERT=<PEM certificate> (make deb): the vendor key that signs the
# kernel image (Secure Boot) and the modules; without them a test key made once and kept
# (ci/6-package/signing-key)
ifdef SIGN_KEY
export DEVEXCL_SIGN_KEY := $(SIGN_KEY)
endif
ifdef SIGN_CERT
export DEVEXCL_SIGN_CERT := $(SIGN_CERT)
endif
# test: the tiny debug config (QEMU tests, CI); or a Debian flavour of the base (make bases)
FLAVOUR ?= test
export FLAVOUR

.PHONY: help bases deps fetch kernel bench bench-profile deb source-deb source-deb-check repo upgrade-test rpm install-test-rpm upgrade-test-rpm secureboot-check deploy-test nvidia-check xgpu-deb check matrix report lava-jobs page-check results generate bisect-check checkpatch shellcheck selftest clean

help:
	@echo "make deb                     main job: Debian 11's kernel (base $(DEB_DEFAULT_BASE)) + the series, Debian's $(DEB_DEFAULT_FLAVOUR) config + the feature, packaged (.deb)"
	@echo "make deb ARCH=arm64          the test flavour of $(DEFAULT_BASE) cross-built for arm64 (BASE=6.12.107: that base)"
	@echo "make deb BASE=... [FLAVOUR=test]  any base; FLAVOUR=test (default when BASE or FLAVOUR is given): the tiny debug config CI boots;"
	@echo "                             FLAVOUR=<flavour>: Debian's own config of that flavour (debian11: cloud-amd64, amd64; debian12: cloud-amd64, amd64; 6.12.107: cloud-amd64, amd64, built in Debian 13)"
	@echo "                             SIGN_KEY=key.pem SIGN_CERT=cert.pem: the vendor key that signs the kernel image (Secure Boot) and modules"
	@echo "                             (default: a test key made once, kept in /var/cache/devexcl/keys)"
	@echo "                             also the metapackages linux-image-devexcl-<flavour>, linux-headers-devexcl-<flavour> and devexcl-signing-cert"
	@echo "make repo [BASE=... FLAVOUR=... REPO=dir YUM_REPO=dir]   after make deb: publish into a signed apt repository (out/repo/apt; reprepro);"
	@echo "                             after make rpm BASE=...: its RPMs into a signed yum repository too (out/repo/yum; createrepo_c, rpmsign)"
	@echo "make upgrade-test [BASE=... FLAVOUR=...]   build release N+1 of make deb's packages and apt-upgrade a GRUB-booted Debian system from N to N+1 (1 h+)"
	@echo "make kernel [BASE=$(DEFAULT_BASE)]   the same without packaging"
	@echo "make rpm [BASE=$(DEFAULT_BASE)] [FLAVOUR=...]  the kernel RPMs (kernel-devexcl[-FLAVOUR] over -core and -modules, -devel, -devel-matched) by rpmbuild --rebuild of their .src.rpm (out/srpm/); rpmlint-checked"
	@echo "make install-test-rpm [BASE=...]  after make rpm: kmod-xgpu against the -devel payload, install into an empty root, boot, xgpu selftest, erase"
	@echo "make upgrade-test-rpm [BASE=...]  after make rpm: build release N+1; dnf installs N from a signed yum repository, upgrades to N+1 next to it, removes N"
	@echo "make source-deb [BASE=$(DEFAULT_BASE)]   the Debian source package linux-devexcl (.dsc, 3.0 (quilt): orig = the base, debian/patches = the series; test flavour)"
	@echo "make source-deb-check [BASE=$(DEFAULT_BASE)]   make deb FLAVOUR=test and make source-deb, then rebuild the .dsc in a clean chroot of the base's release:"
	@echo "                             the same packages as make deb's (names, versions, relations, files)"
	@echo "make xgpu-deb                the xgpu-dkms and xgpu-tools packages (lintian-checked)"
	@echo "make secureboot-check BASE=debian11 FLAVOUR=cloud-amd64   our packages signed with the test firmware's key, booted with"
	@echo "                             Secure Boot enforced (OVMF snakeoil): lockdown, module signatures; BASE=debian11-kernel: Debian's own (control)"
	@echo "                             TRUST=mok: make deb's packages (vendor key), enrolled with mokutil + MokManager first"
	@echo "make deploy-test [BASE=debian11 FLAVOUR=...]   what make matrix runs of deployment (about 4 h here, cold): make deb's packages upgraded N -> N+1,"
	@echo "                             Secure Boot with the vendor key as a MOK and with the firmware's key, the flavour's RPMs (doc/packages.md)"
	@echo "make nvidia-check BASE=6.1.176 FLAVOUR=cloud-amd64   NVIDIA's open modules (Debian's nvidia-open-kernel-dkms) built by DKMS"
	@echo "                             against our packages: UVM HMM on, page API, symbols resolved; BASE=debian12-kernel: Debian's own (control)"
	@echo "make check [BASE=...]        the tests: every base (or one), stock and patched, THP always+never"
	@echo "make matrix [BASE=...]       the full matrix: builds and boots every base, x86_64 and arm64 (CI's make check: a subset, x86_64)"
	@echo "                             kernels compile through ccache when it is installed (make matrix installs it;"
	@echo "                             DEVEXCL_CCACHE=auto|yes|no, doc/pipeline.md#ccache)"
	@echo "make bench [BASE=...]        release (bench) kernels of the BENCH bases against 7.1 in interleaved boots: ratios, verdicts, plots (out/report/perf.md)"
	@echo "make bench-profile CASE=PATH:MEM:OP:SIZE [BASE=...]  after make bench: one perf-profiled boot of each bench kernel on that case (out/report/profile-*.md)"
	@echo "make check|matrix|kernel ARCH=arm64   the arm64 test kernels only (cross-built, qemu-system-aarch64 -M virt)"
	@echo "make report [FROM=\"DIR...\"]   the report of out/ again; FROM: merge the out/ directories of several runs into out/ first"
	@echo "make page-check              after make check: open out/report/matrix.html in headless Chromium (report/matrix.png)"
	@echo "make lava-jobs               after make check/matrix: one LAVA job per boot in out/runs (out/lava/jobs, artifacts in out/lava/artifacts)"
	@echo "make results                 after make check/matrix: copy out/report/results.md to doc/results/ (commit it)"
	@echo "make bisect-check BASE=...   every prefix of the series builds (slow, on demand)"
	@echo "make generate                rewrite the generated files (per-base series, UPSTREAM.md tables, doc/bases.md)"
	@echo "make checkpatch | shellcheck | selftest | bases | deps | clean"

bases:
	@for f in bases/*; do printf '  %-12s %s\n' "$${f#bases/}" "$$(sed -n '1s/^# *//p' $$f)"; done

deps:
	sh ci/host/install-deps

fetch:
	sh ci/1-fetch/fetch-base $(or $(BASE),$(DEFAULT_BASE))

kernel: deps
	sh ci/2-apply/apply $(or $(BASE),$(DEFAULT_BASE)) patched
	sh ci/3-configure/configure $(or $(BASE),$(DEFAULT_BASE)) patched
	sh ci/4-build/build-kernel $(or $(BASE),$(DEFAULT_BASE)) patched

deb: kernel
	sh ci/6-package/build-deb $(or $(BASE),$(DEFAULT_BASE))
	sh ci/6-package/build-meta-deb $(or $(BASE),$(DEFAULT_BASE))
	sh ci/6-package/build-cert-deb

# the signed apt repository (ci/6-package/publish-repo; REPO=<dir>, default out/repo/apt):
# what make deb built for BASE [FLAVOUR], its certificate package and the xgpu packages
# of its Debian release, built here when missing; and the signed yum repository
# (ci/6-package/publish-yum-repo; YUM_REPO=<dir>, default out/repo/yum) of BASE's RPMs
# when make rpm made them
repo: deps
	@b=$(or $(BASE),$(DEFAULT_BASE)); \
	s=$$(sed -n 's/^BUILD_SUITE=//p' bases/$$b); \
	if [ "$(FLAVOUR)" != test ] && grep -q '^DEB_SUITE=' bases/$$b; then s=$$(sed -n 's/^DEB_SUITE=//p' bases/$$b); fi; \
	if [ -n "$$s" ] && [ "$$s" != "$$(. /etc/os-release && echo $$VERSION_CODENAME)" ]; then sh ci/6-package/build-xgpu-deb $$s; \
	else sh ci/6-package/build-xgpu-deb; fi
	$(if $(REPO),DEVEXCL_REPO=$(REPO)) sh ci/6-package/publish-repo $(or $(BASE),$(DEFAULT_BASE))
	@b=$(or $(BASE),$(DEFAULT_BASE)); d=$$b$(if $(filter-out test,$(FLAVOUR)),-$(FLAVOUR)); \
	if ls "$${DEVEXCL_OUT:-out}/rpm/$$d"/kernel-devexcl-*.rpm >/dev/null 2>&1; then \
	$(if $(YUM_REPO),DEVEXCL_YUM_REPO=$(YUM_REPO)) sh ci/6-package/publish-yum-repo $$b; \
	else echo "make repo: no RPMs of $$b FLAVOUR=$(FLAVOUR) (make rpm BASE=$$b FLAVOUR=$(FLAVOUR) makes them): no yum repository published"; fi

# The upgrade test (ci/6-package/upgrade-test-deb), BASE=<base> FLAVOUR=<Debian flavour>
# (default: make deb's): release N is what make deb builds, the test builds release N+1
# (out/upgrade-next/) and upgrades a GRUB-booted Debian system from N to N+1 with apt
upgrade-test: deps
	@[ -n "$(BASE)" ] && [ "$(FLAVOUR)" != test ] || { echo "error: upgrade-test: needs a base and a Debian flavour, e.g. BASE=debian11 FLAVOUR=cloud-amd64 (the test config's release has no release number: its next release would replace it in place)" >&2; exit 2; }
	$(MAKE) deb BASE=$(BASE) FLAVOUR=$(FLAVOUR)
	sh ci/6-package/upgrade-test-deb $(BASE)

# rpmbuild builds the kernel itself from the base tarball + series (not from make kernel),
# by rpmbuild --rebuild of the source RPM it makes first (out/srpm/); FLAVOUR=<Debian
# flavour>: Debian's config of it, signed with the vendor key (SIGN_KEY/SIGN_CERT)
rpm: deps
	sh ci/6-package/build-rpm $(or $(BASE),$(DEFAULT_BASE))

install-test-rpm: deps
	sh ci/6-package/install-test-rpm $(or $(BASE),$(DEFAULT_BASE))

# after make rpm: release N+1 built (out/upgrade-next-rpm/), both published into a signed
# yum repository, dnf installs N, upgrades to N+1 next to it, removes N
upgrade-test-rpm: deps
	sh ci/6-package/upgrade-test-rpm $(or $(BASE),$(DEFAULT_BASE))

# UEFI Secure Boot enforced (ci/6-package/secureboot-check): BASE=<base> FLAVOUR=<flavour>
# builds our packages signed with the key the test firmware trusts (Debian's ovmf snakeoil
# key, whose private half is public, in place of a fleet's vendor key) into
# out/secureboot/ (never out/deb/, where release packages go) and boots them;
# BASE=debian11-kernel: Debian's own image, the control (CI runs it).
# TRUST=mok: make deb's own packages (out/deb/, the vendor key: SIGN_KEY/SIGN_CERT or the
# cached test key), which the firmware does not trust until devexcl-signing-cert is
# enrolled as a Machine Owner Key from Debian's signed kernel, as README.Debian says
SB_OUT := $(CURDIR)/out/secureboot
secureboot-check: deps
	@[ -n "$(BASE)" ] || { echo "error: secureboot-check: name the kernel: BASE=debian11 FLAVOUR=cloud-amd64, or BASE=debian11-kernel (Debian's own, the control)" >&2; exit 2; }
	@case "$(TRUST)" in ""|db|mok) ;; *) echo "error: secureboot-check: TRUST=$(TRUST): db (packages signed with the firmware's key, the default) or mok (make deb's vendor key, enrolled as a MOK)" >&2; exit 2 ;; esac
	@if grep -q '^BASE_KIND=debian-kernel' bases/$(BASE) 2>/dev/null; then \
		[ "$(TRUST)" != mok ] || { echo "error: secureboot-check: TRUST=mok checks our packages: $(BASE) is Debian's own kernel" >&2; exit 2; }; \
	elif [ "$(FLAVOUR)" = test ]; then echo "error: secureboot-check: BASE=$(BASE) needs FLAVOUR=<Debian flavour> (the test config has no EFI stub)" >&2; exit 2; \
	elif [ "$(TRUST)" = mok ]; then $(MAKE) deb BASE=$(BASE) FLAVOUR=$(FLAVOUR); \
	else key=$$(sh ci/6-package/secureboot-key) && $(MAKE) deb BASE=$(BASE) FLAVOUR=$(FLAVOUR) SIGN_KEY=$$key SIGN_CERT=/usr/share/ovmf/PkKek-1-snakeoil.pem DEVEXCL_OUT=$(SB_OUT); fi
	@if [ "$(TRUST)" = mok ]; then DEVEXCL_SB_TRUST=mok sh ci/6-package/secureboot-check $(BASE); \
	else DEVEXCL_SB_TRUST=db DEVEXCL_OUT=$(SB_OUT) sh ci/6-package/secureboot-check $(BASE); fi

# The deployment tests make matrix runs (ci/6-package/deploy-test), alone: BASE (default: the
# bases ci/matrix gives a DEPLOY_TEST flavour) in that flavour (or FLAVOUR=...): make deb's
# packages, make upgrade-test, make secureboot-check TRUST=mok and TRUST=db, make rpm
deploy-test: deps
	sh ci/6-package/deploy-test $(BASE)

# NVIDIA's open modules (Debian's nvidia-open-kernel-dkms) built by DKMS against a kernel
# (ci/6-package/nvidia-check): BASE=<source base> FLAVOUR=<Debian flavour> makes our packages first
# (make deb); BASE=<debianN-kernel>: Debian's own kernel, the control
nvidia-check: deps
	@[ -n "$(BASE)" ] || { echo "error: nvidia-check: name the kernel: BASE=6.1.176 FLAVOUR=cloud-amd64, or BASE=debian12-kernel (Debian's own)" >&2; exit 2; }
	@if grep -q '^BASE_KIND=debian-kernel' bases/$(BASE) 2>/dev/null; then :; \
	elif [ "$(FLAVOUR)" = test ]; then echo "error: nvidia-check: BASE=$(BASE) needs FLAVOUR=<Debian flavour> (NVIDIA's conftests need a full config; the test config is too small)" >&2; exit 2; \
	else $(MAKE) deb BASE=$(BASE) FLAVOUR=$(FLAVOUR); fi
	sh ci/6-package/nvidia-check $(BASE)

source-deb: kernel
	sh ci/6-package/build-source-deb $(or $(BASE),$(DEFAULT_BASE))

source-deb-check: kernel
	FLAVOUR=test sh ci/6-package/build-deb $(or $(BASE),$(DEFAULT_BASE))
	FLAVOUR=test sh ci/6-package/build-source-deb $(or $(BASE),$(DEFAULT_BASE))
	FLAVOUR=test sh ci/6-package/rebuild-source-deb $(or $(BASE),$(DEFAULT_BASE))

xgpu-deb: deps
	sh ci/6-package/build-xgpu-deb

check:
	@rm -f out/.check-rc; mkdir -p out
	sh ci/check $(BASE); echo $$? >out/.check-rc; exit $$(cat out/.check-rc)

# make report: ci/7-report/report on out/ again; make report FROM="DIR..." merges the out/ directories
# of several runs (shards of the matrix, LAVA jobs) into out/ first (ci/7-report/merge-report)
report:
	@if [ -n "$(FROM)" ]; then sh ci/7-report/merge-report $(FROM); else sh ci/7-report/report; fi

# matrix.html in headless Chromium: tables, links, screenshot (ci/7-report/page-check, after a report)
page-check:
	sh ci/7-report/page-check

# LAVA job definitions of the boots in out/runs (ci/5-boot/lava-jobs; doc/pipeline.md, LAVA)
lava-jobs:
	sh ci/5-boot/lava-jobs

matrix:
	@rm -f out/.check-rc; mkdir -p out
	sh ci/check --full $(BASE); echo $$? >out/.check-rc; exit $$(cat out/.check-rc)

# make bench: the performance comparison (ci/bench): bench kernels (the test config without
# its debug options) of the bases ci/matrix marks BENCH=yes (or BASE=...) against the
# BENCH_REFERENCE base, DEVEXCL_BENCH_BOOTS rounds of boots (default 5)
bench: deps
	FLAVOUR=bench sh ci/bench $(BASE)

# after make bench: one profiled boot per bench kernel of one case of the bench
# (CASE=PATH:MEM:OP:SIZE, e.g. hmm:4k:faultback:512), Debian's perf in the guest
bench-profile: deps
	@[ -n "$(CASE)" ] || { echo "make bench-profile: name the case: CASE=PATH:MEM:OP:SIZE (e.g. hmm:4k:faultback:512)" >&2; exit 2; }
	FLAVOUR=bench sh ci/bench-profile $(CASE) $(BASE)

results:
	sh ci/7-report/publish-results

bisect-check: deps
	sh ci/2-apply/bisect-check $(or $(BASE),$(DEFAULT_BASE))

checkpatch:
	for s in series/*.series; do s=$${s#series/}; sh ci/0-lint/checkpatch $${s%.series} || exit 1; done

shellcheck:
	sh ci/0-lint/shellcheck

generate:
	sh ci/0-lint/generate

selftest:
	sh ci/0-lint/selftest

clean:
	rm -rf out
