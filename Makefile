# kailashd build. `make` builds build/kailashd; `make test` runs the Criterion unit tests and the pytest
# integration tests; `make asan` does the same with AddressSanitizer + UndefinedBehaviorSanitizer.
# `make install` / `make uninstall` take PREFIX (default /usr/local) and DESTDIR (for packaging).
VERSION   := 0.1.0
BUILD     ?= build
CC        ?= cc
PYTHON    ?= /usr/bin/python3
PKGS      := libmicrohttpd jansson libcurl libcrypto hiredis gnutls libpq
OPT       ?= -O2 -g
CFLAGS    := $(OPT) -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -pthread \
             -D_GNU_SOURCE -DKAILASH_VERSION='"$(VERSION)"' -Iinclude \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread -lm
TEST_LIBS := -lcriterion

SRCS      := $(sort $(wildcard src/*/*.c))
OBJS      := $(SRCS:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ  := $(BUILD)/obj/src/main.o
LIB       := $(BUILD)/libkailash.a
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test unit integration asan deps fmt clean bench check-deps fuzz fuzz-build install uninstall

all: $(BUILD)/kailashd

$(BUILD)/obj/%.o: %.c $(wildcard include/kailash/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# db/migrations/*.sql embedded in the binary (src/store/pg_migrate.c includes the generated header).
MIGRATIONS := $(sort $(wildcard db/migrations/*.sql))
$(BUILD)/gen/pg_migrations.h: scripts/embed_sql.sh $(MIGRATIONS)
	@mkdir -p $(dir $@)
	sh scripts/embed_sql.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@
$(BUILD)/obj/src/store/pg_migrate.o: $(BUILD)/gen/pg_migrations.h
$(BUILD)/obj/src/store/pg_migrate.o: CFLAGS += -I$(BUILD)/gen

$(LIB): $(OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/kailashd: $(MAIN_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) $(TEST_LIBS)

run: deps
	$(MAKE) $(BUILD)/kailashd
	@mkdir -p var && cp -n examples/data/* var/ 2>/dev/null || true
	$(BUILD)/kailashd --config conf/kailashd.json

# Criterion prints one summary line per test binary; tests/unit/run.sh adds the total line.
# Integration tests run after the unit tests so `make test` ends with pytest's summary line.
unit: $(UNIT_BINS)
	@sh tests/unit/run.sh $(UNIT_BINS)

integration: $(BUILD)/kailashd
	KAILASHD_BIN=$(abspath $(BUILD)/kailashd) $(PYTHON) -m pytest -q tests/integration

test: deps
	$(MAKE) all unit
	$(MAKE) integration

asan:
	$(MAKE) test BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined"

# libFuzzer targets (tests/fuzz/fuzz_*.c, one per parser): the library is rebuilt with clang under
# ASan+UBSan into build-fuzz/, each target linked with -fsanitize=fuzzer and run for FUZZ_TIME seconds
# on its seed corpus (tests/fuzz/corpus/<target>/). New inputs go to build-fuzz/corpus/, crashes to
# tests/fuzz/crashes/ (neither is committed). A fuzz target may include the source it fuzzes.
FUZZ_TIME ?= 60
FUZZ_OPT  := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
             -fno-sanitize-recover=undefined
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build-fuzz/fuzz/%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc/upstream -fsanitize=fuzzer,address,undefined -o $@ $< $(LIB) $(LDLIBS)

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=clang OPT="$(FUZZ_OPT)" $(FUZZ_BINS)

fuzz: fuzz-build
	sh tests/fuzz/run.sh $(FUZZ_TIME) $(FUZZ_BINS)

bench: deps $(BUILD)/kailashd
	sh bench/run.sh $(abspath $(BUILD)/kailashd)

# Install layout. The unit goes to $(PREFIX)/lib/systemd/system: systemd reads both /usr/lib/... and
# /usr/local/lib/systemd/system, so either PREFIX works, and /etc/systemd/system stays the admin's (for
# overrides and drop-ins, never overwritten by an install). The unit's ExecStart names the installed
# binary. The config lives in /etc/kailashd whatever PREFIX is (the unit reads it there); it is written
# only when none is there yet, with absolute paths (the example workflows, the service's state
# directory), and uninstall removes it only when it is still exactly what install wrote.
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    := $(PREFIX)/bin
UNITDIR   := $(PREFIX)/lib/systemd/system
SHAREDIR  := $(PREFIX)/share/kailashd
MAN1DIR   := $(PREFIX)/share/man/man1
CONFDIR   := /etc/kailashd
EXAMPLES  := $(notdir $(sort $(wildcard workflows/*.json)))
UNIT_GEN  := sed 's|/usr/local/bin/kailashd|$(BINDIR)/kailashd|g' systemd/kailashd.service
CONF_GEN  := sed -e 's|"workflows_dir": *"workflows"|"workflows_dir": "$(SHAREDIR)/workflows"|' \
                 -e 's|"data_dir": *"var"|"data_dir": "/var/lib/kailashd"|' conf/kailashd.json

install: $(BUILD)/kailashd
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SHAREDIR)/workflows $(DESTDIR)$(MAN1DIR) \
	    $(DESTDIR)$(CONFDIR)
	install -m 0755 $(BUILD)/kailashd $(DESTDIR)$(BINDIR)/kailashd
	$(UNIT_GEN) > $(DESTDIR)$(UNITDIR)/kailashd.service && chmod 0644 $(DESTDIR)$(UNITDIR)/kailashd.service
	install -m 0644 $(addprefix workflows/,$(EXAMPLES)) $(DESTDIR)$(SHAREDIR)/workflows/
	install -m 0644 docs/kailashd.1 $(DESTDIR)$(MAN1DIR)/kailashd.1
	install -m 0644 python/kailash_runner.py $(DESTDIR)$(SHAREDIR)/kailash_runner.py
	@if [ -e $(DESTDIR)$(CONFDIR)/kailashd.json ]; then \
	    echo "kept $(DESTDIR)$(CONFDIR)/kailashd.json (already there)"; \
	else \
	    echo "writing $(DESTDIR)$(CONFDIR)/kailashd.json"; \
	    $(CONF_GEN) > $(DESTDIR)$(CONFDIR)/kailashd.json && chmod 0644 $(DESTDIR)$(CONFDIR)/kailashd.json; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/kailashd $(DESTDIR)$(UNITDIR)/kailashd.service $(DESTDIR)$(MAN1DIR)/kailashd.1 \
	    $(DESTDIR)$(SHAREDIR)/kailash_runner.py $(addprefix $(DESTDIR)$(SHAREDIR)/workflows/,$(EXAMPLES))
	rmdir $(DESTDIR)$(SHAREDIR)/workflows $(DESTDIR)$(SHAREDIR) 2>/dev/null || true
	@if [ -e $(DESTDIR)$(CONFDIR)/kailashd.json ]; then \
	    if $(CONF_GEN) | cmp -s - $(DESTDIR)$(CONFDIR)/kailashd.json; then \
	        echo "rm -f $(DESTDIR)$(CONFDIR)/kailashd.json"; rm -f $(DESTDIR)$(CONFDIR)/kailashd.json; \
	        rmdir $(DESTDIR)$(CONFDIR) 2>/dev/null || true; \
	    else \
	        echo "kept $(DESTDIR)$(CONFDIR)/kailashd.json (edited since install)"; \
	    fi; \
	fi

deps:
	@sh scripts/deps.sh install

check-deps:
	@sh scripts/deps.sh check

fmt:
	clang-format -i $(wildcard src/*.c src/*/*.c src/*/*.h include/kailash/*.h tests/unit/*.c tests/unit/*.h)

clean:
	rm -rf build build-asan build-fuzz
