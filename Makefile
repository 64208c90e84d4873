# hyp: build, test and measure. `make demo` and `make test` are the two set-up
# commands of the README; CI runs `.ci/run`, which calls `make test`.

CARGO ?= cargo
HOST_TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
MUSL_TARGET := x86_64-unknown-linux-musl
HAVE_MUSL := $(shell rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET) && echo yes)
STATIC_TARGET := $(if $(HAVE_MUSL),$(MUSL_TARGET),$(HOST_TARGET))
STATIC_BIN := target/$(STATIC_TARGET)/release/hyp
MAN_GEN := target/release/examples/hyp-man
# What the binaries are built from: `make install` (often under sudo) builds
# only when one of these is newer than the binary, so `make static && sudo
# make install` runs no cargo as root.
SOURCES := Cargo.toml Cargo.lock $(shell find src -name '*.rs')

# `make install [PREFIX=/usr/local] [DESTDIR=]`: the usual places.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

.PHONY: build test unit smoke demo bench static install uninstall lint clean

build:
	$(CARGO) build --release --bins --examples

# Unit + integration tests, then the hermetic end-to-end flows.
test: unit smoke

unit:
	$(CARGO) test --all-targets

smoke: build
	bash smoke/run.sh

demo: build
	bash smoke/demo.sh

bench: build static
	bash bench/run.sh

# A fully static binary: musl when the target is installed, else glibc with
# crt-static (an explicit --target keeps build scripts dynamic).
static: $(STATIC_BIN)
ifeq ($(HAVE_MUSL),yes)
	@f=$(STATIC_BIN); ls -l $$f | awk '{printf "static binary: %s (%.1f MiB)\n", $$9, $$5/1048576}'; file $$f 2>/dev/null || true
else
	@f=$(STATIC_BIN); ls -l $$f | awk '{printf "static binary: %s (%.1f MiB)\n", $$9, $$5/1048576}'; (ldd $$f 2>&1 | grep -Eq 'not a dynamic|statically linked' && echo "linkage: static") || { ldd $$f; exit 1; }
endif

# Touched after the build: cargo leaves a binary it found fresh alone, and make
# must not then ask it again every time.
$(STATIC_BIN): $(SOURCES)
ifeq ($(HAVE_MUSL),yes)
	$(CARGO) build --release --bin hyp --target $(MUSL_TARGET)
else
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --bin hyp --target $(HOST_TARGET)
endif
	@touch $@

# The man page generator, a development tool (examples/hyp-man.rs).
$(MAN_GEN): $(SOURCES) examples/hyp-man.rs
	$(CARGO) build --release --example hyp-man
	@touch $@

# The static hyp, one man page per command, completions for bash, zsh, fish.
install: static $(MAN_GEN)
	install -d "$(BINDIR)" "$(MANDIR)" "$(BASHDIR)" "$(ZSHDIR)" "$(FISHDIR)"
	install -m 0755 $(STATIC_BIN) "$(BINDIR)/hyp"
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(MAN_GEN) "$$tmp/man1"; \
	  echo 'install -m 0644 <hyp-man pages> "$(MANDIR)"'; \
	  install -m 0644 "$$tmp"/man1/*.1 "$(MANDIR)"; \
	  $(STATIC_BIN) completions bash >"$$tmp/hyp"; \
	  $(STATIC_BIN) completions zsh >"$$tmp/_hyp"; \
	  $(STATIC_BIN) completions fish >"$$tmp/hyp.fish"; \
	  echo 'install -m 0644 <hyp completions bash|zsh|fish> "$(BASHDIR)/hyp" "$(ZSHDIR)/_hyp" "$(FISHDIR)/hyp.fish"'; \
	  install -m 0644 "$$tmp/hyp" "$(BASHDIR)/hyp"; \
	  install -m 0644 "$$tmp/_hyp" "$(ZSHDIR)/_hyp"; \
	  install -m 0644 "$$tmp/hyp.fish" "$(FISHDIR)/hyp.fish"

# Everything `install` put in place. A service unit is `hyp daemon
# uninstall`'s to remove, before this.
uninstall:
	rm -f "$(BINDIR)/hyp" "$(BASHDIR)/hyp" "$(ZSHDIR)/_hyp" "$(FISHDIR)/hyp.fish"
	rm -f "$(MANDIR)/hyp.1" "$(MANDIR)"/hyp-*.1

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
