# dripd build. `make` leaves bin/dripd and bin/dripctl.
#
#   make deps        install the Debian packages the build and tests need
#   make run         deps + build + start dripd on 127.0.0.1:8080 (embedded defaults)
#   make test        deps + unit tests (Check) + black-box tests against the real daemon
#   make test-powerloss  the long power-cut suite (dripd on lossyfs, issue 19)
#   make test-cluster    three nodes behind nginx on PostgreSQL + S3 (issue 16)
#   make SANITIZE=address,undefined test   |   make SANITIZE=thread test
#   make CFLAGS='-O0 -g'   your CFLAGS/CPPFLAGS/LDFLAGS are added after the
#                          project's (which stay: -Iinclude, warnings, hardening)
#   make valgrind    unit tests under valgrind
#   make install PREFIX=/usr/local DESTDIR=
#   make fuzz        libFuzzer targets (clang) into build/fuzz/
#   make analyze     clang static analysis (scan-build) of every program
#   make format-check
#
# src/ is laid out by what runs where (docs/ARCHITECTURE.md): every
# src/<folder>/*.c except the program entry points goes into
# build/libdripd.a; adding a module is adding a file, never editing this
# Makefile. scripts/check-layers.sh (run by every build) keeps each folder
# to the folders below it: http never includes pipeline, nor the reverse.

PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
SANITIZE ?=
BUILD    ?= build$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))
comma    := ,

# pkg-config runs when this file is parsed. On a fresh machine the -dev
# packages are not there yet, so `run` and `test` install them first and
# only then start a second make, which parses this file again (see below).
PKGS     := libevent libevent_pthreads jansson yaml-0.1 libcurl libssl libcrypto sqlite3 libpq expat
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser

# The dripd-decode helper alone links the decoders (src/decode/decoder.c,
# sandbox.c, decode_main.c); dripd itself never loads them. Their headers
# are system headers (-isystem): glib's do not pass -Wpedantic.
DECODE_PKGS   := vips libavformat libavcodec libswscale libavutil libmagic libseccomp
DECODE_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(DECODE_PKGS) gmodule-2.0 2>/dev/null))
DECODE_CFLAGS += -DDRIPD_VIPS_LIBDIR=\"$(shell pkg-config --variable=libdir vips 2>/dev/null)\"
DECODE_LIBS   := $(shell pkg-config --libs $(DECODE_PKGS) gmodule-2.0 2>/dev/null)
PKG_OK        := $(shell pkg-config --exists $(PKGS) $(DECODE_PKGS) 2>/dev/null && echo yes)

# Flags. The project's own live in DRIPD_*; CPPFLAGS, CFLAGS and LDFLAGS
# are the user's and come last, so `make CFLAGS=-O0` changes the
# optimisation and keeps -Iinclude, the warnings and the hardening.
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.1.0)
WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= $(if $(SANITIZE),-O1,-O2) -g
DRIPD_CPPFLAGS := -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) -DDRIPD_VERSION=\"$(VERSION)\"
DRIPD_CFLAGS   := -std=c11 $(WARN) -MMD -MP -pthread
DRIPD_LDFLAGS  :=
LDLIBS   += $(PKG_LIBS) -pthread -lm

# Hardening, on by default: stack protector, PIE, full RELRO (GOT read-only
# after start-up), CET where the compiler targets it, and
# _FORTIFY_SOURCE=3 when optimising (it needs -O). Sanitizer builds leave
# FORTIFY out: its __*_chk functions bypass the sanitizers' interceptors.
DRIPD_CFLAGS  += -fstack-protector-strong -fPIE
DRIPD_CFLAGS  += $(shell $(CC) -fcf-protection -x c -c /dev/null -o /dev/null 2>/dev/null && echo -fcf-protection)
DRIPD_LDFLAGS += -pie -Wl,-z,relro,-z,now
OPT_LEVEL := $(lastword $(filter -O%,$(CFLAGS)))
ifeq ($(SANITIZE),)
ifneq ($(filter-out -O0,$(OPT_LEVEL)),)
DRIPD_CPPFLAGS += -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3
endif
endif
ifneq ($(SANITIZE),)
DRIPD_CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
DRIPD_LDFLAGS += -fsanitize=$(SANITIZE)
endif
ifeq ($(CI),true)
DRIPD_CFLAGS  += -Werror
endif
ALL_CFLAGS  = $(DRIPD_CPPFLAGS) $(DRIPD_CFLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(DRIPD_LDFLAGS) $(LDFLAGS)

MAINS    := src/supervisor/main.c
DECODE_ONLY := src/decode/decoder.c src/decode/sandbox.c src/decode/decode_main.c
DECODE_OBJ := $(DECODE_ONLY:src/%.c=$(BUILD)/src/%.o)
LIB_SRC  := $(filter-out $(MAINS) $(DECODE_ONLY),$(filter-out src/dripctl/%,$(wildcard src/*/*.c)))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/src/%.o) $(BUILD)/gen/web_assets.o
WEB_FILES := $(shell find web/public -type f 2>/dev/null)
CTL_SRC  := $(wildcard src/dripctl/*.c)
CTL_OBJ  := $(CTL_SRC:src/%.c=$(BUILD)/src/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

BIN_DRIPD  := bin/dripd$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))
BIN_CTL    := bin/dripctl$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))
BIN_DECODE := bin/dripd-decode$(if $(filter-out thread,$(SANITIZE)),-$(subst $(comma),-,$(SANITIZE)))

.PHONY: all check-layers check-pkgs deps run test test-all unit blackbox systemd-check \
        valgrind install clean format format-check analyze fuzz fuzz-smoke bench chaos web lossyfs \
        test-powerloss test-cluster

all: check-layers $(BIN_DRIPD) $(BIN_DECODE) $(if $(CTL_SRC),$(BIN_CTL))

check-layers:
	@sh scripts/check-layers.sh

# A build without the -dev packages stops here with what to do, not at the
# first missing header or undefined reference.
check-pkgs:
	@test "$(PKG_OK)" = yes || { echo "make: the -dev packages are missing (pkg-config $(PKGS) $(DECODE_PKGS)); run 'make deps' as root, or 'make run' / 'make test', which do" >&2; exit 1; }

$(BUILD)/src/%.o: src/%.c | check-pkgs
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The web UI is embedded in the binary (scripts/embed-web.sh).
$(BUILD)/gen/web_assets.c: $(WEB_FILES) scripts/embed-web.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-web.sh $@

$(BUILD)/gen/web_assets.o: $(BUILD)/gen/web_assets.c | check-pkgs
	$(CC) $(ALL_CFLAGS) -Isrc/api -c $< -o $@

$(BUILD)/libdripd.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BIN_DRIPD): $(BUILD)/src/supervisor/main.o $(BUILD)/libdripd.a
	@mkdir -p bin
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(DECODE_OBJ): DRIPD_CPPFLAGS += $(DECODE_CFLAGS)

# A ThreadSanitizer build runs the plain helper (decode.c, find_helper):
# the helper's own code is single-threaded, TSan cannot see the locks of
# the uninstrumented libvips and glib, and its runtime does not live in
# the helper's sandbox. So `make SANITIZE=thread` builds the plain one.
ifeq ($(SANITIZE),thread)
.PHONY: $(BIN_DECODE)
$(BIN_DECODE):
	@$(MAKE) --no-print-directory SANITIZE= $@
else
$(BIN_DECODE): $(DECODE_OBJ) $(BUILD)/libdripd.a
	@mkdir -p bin
	$(CC) $(ALL_LDFLAGS) -Wl,--as-needed -o $@ $^ $(DECODE_LIBS) $(LDLIBS)
endif

$(BIN_CTL): $(CTL_OBJ) $(BUILD)/libdripd.a
	@mkdir -p bin
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# Tests may reach a folder's own headers ("api/spool.h"); src/ may not.
$(BUILD)/tests/%: tests/%.c $(BUILD)/libdripd.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc $(ALL_LDFLAGS) -o $@ $< $(BUILD)/libdripd.a $(LDLIBS) $(shell pkg-config --libs check)

# Test tools (never sanitized, whatever SANITIZE says): lossyfs, a FUSE
# file system that forgets what was not made durable, and its LD_PRELOAD
# shim that turns a syncfs(2) of the mount into a lossyfs sync.
TOOLS        := build/tools
LOSSYFS      := $(TOOLS)/lossyfs
LOSSYFS_SO   := $(TOOLS)/liblossyfs-preload.so
TOOL_CFLAGS  := -O2 -g -std=c11 -D_GNU_SOURCE $(WARN) $(if $(filter true,$(CI)),-Werror)

lossyfs: $(LOSSYFS) $(LOSSYFS_SO)

$(LOSSYFS): tests/tools/lossyfs/lossyfs.c
	@mkdir -p $(dir $@)
	$(CC) $(TOOL_CFLAGS) $(shell pkg-config --cflags fuse3) -o $@ $< $(shell pkg-config --libs fuse3) -pthread

$(LOSSYFS_SO): tests/tools/lossyfs/preload.c
	@mkdir -p $(dir $@)
	$(CC) $(TOOL_CFLAGS) -fPIC -shared -o $@ $< -ldl

deps:
	@sh scripts/deps.sh

# run and test install the packages first, then build in a second make that
# reads pkg-config's answers afresh (this make read them before deps ran).
run: deps
	@$(MAKE) --no-print-directory all
	$(BIN_DRIPD) $(if $(CONFIG),-c $(CONFIG))

# Unit tests: each Check binary prints its own summary; the line counting
# every suite comes last.
# Sanitized builds: a UBSan report fails the test (halt_on_error), ASan
# leaves SIGSEGV alone (the decoder sandbox tests expect the real signal,
# which ASan's handler would turn into exit status 1), and Check's per-test
# timeouts are 4 times longer (sanitized code is several times slower:
# test_multipart's split_three_ways overran its 4 s on a loaded machine).
unit: $(TEST_BIN) $(BIN_DECODE)
	@DRIPD_DECODE_BIN=$(abspath $(BIN_DECODE)) ASAN_OPTIONS=$${ASAN_OPTIONS-handle_segv=0} \
	  UBSAN_OPTIONS=$${UBSAN_OPTIONS-halt_on_error=1:print_stacktrace=1} \
	  CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER-$(if $(SANITIZE),4,1)} \
	  sh scripts/run-unit.sh $(TEST_BIN)

blackbox: all lossyfs
	@DRIPD_BIN=$(abspath $(BIN_DRIPD)) DRIPCTL_BIN=$(abspath $(BIN_CTL)) \
	  LOSSYFS_BIN=$(abspath $(LOSSYFS)) LOSSYFS_PRELOAD=$(abspath $(LOSSYFS_SO)) \
	  sh scripts/run-blackbox.sh

# Three dripd nodes behind nginx on one PostgreSQL catalog and one S3
# bucket (tests/cluster, docs/CLUSTER.md): real servers on loopback.
test-cluster: all
	@sh scripts/node-deps.sh >/dev/null
	@DRIPD_BIN=$(abspath $(BIN_DRIPD)) DRIPCTL_BIN=$(abspath $(BIN_CTL)) \
	  /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs tests/cluster $(PYTEST_ARGS)

# Hundreds of power cuts (the short version is part of blackbox).
test-powerloss: all lossyfs
	@DRIPD_BIN=$(abspath $(BIN_DRIPD)) DRIPCTL_BIN=$(abspath $(BIN_CTL)) \
	  LOSSYFS_BIN=$(abspath $(LOSSYFS)) LOSSYFS_PRELOAD=$(abspath $(LOSSYFS_SO)) \
	  sh scripts/run-blackbox.sh --powerloss

systemd-check:
	@sh scripts/systemd-check.sh

test: deps
	@$(MAKE) --no-print-directory test-all

test-all: all unit systemd-check blackbox

valgrind: $(TEST_BIN) $(BIN_DECODE)
	@DRIPD_DECODE_BIN=$(abspath $(BIN_DECODE)) VALGRIND=1 sh scripts/run-unit.sh $(TEST_BIN)

install: all
	@PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) sh scripts/install.sh

fuzz:
	@sh scripts/build-fuzz.sh

fuzz-smoke: fuzz
	@sh scripts/fuzz-smoke.sh $(or $(FUZZ_SECONDS),60)

bench: all
	@bash bench/run.sh
	@RUNS=$${RUNS:-3} bash bench/pipeline.sh

chaos: all
	@DRIPD_BIN=$(abspath $(BIN_DRIPD)) sh scripts/run-blackbox.sh --chaos

format:
	clang-format -i src/*/*.c src/*/*.h include/dripd/*.h tests/*.c fuzz/*.c 2>/dev/null || true

format-check:
	@sh scripts/format-check.sh

# clang static analysis (scan-build) of every program; fails on any finding
analyze:
	@sh scripts/analyze.sh

clean:
	rm -rf build build-* bin

-include $(LIB_OBJ:.o=.d) $(CTL_OBJ:.o=.d) $(DECODE_OBJ:.o=.d) $(BUILD)/src/supervisor/main.d
