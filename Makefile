# hyp: build, test and measure. `make demo` and `make test` are the two set-up
# commands of the README; CI runs `.ci/run`, which calls `make test`.

CARGO ?= cargo
HOST_TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
MUSL_TARGET := x86_64-unknown-linux-musl
HAVE_MUSL := $(shell rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET) && echo yes)

.PHONY: build test unit smoke demo bench static lint clean

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
static:
ifeq ($(HAVE_MUSL),yes)
	$(CARGO) build --release --bin hyp --target $(MUSL_TARGET)
	@f=target/$(MUSL_TARGET)/release/hyp; ls -l $$f | awk '{printf "static binary: %s (%.1f MiB)\n", $$9, $$5/1048576}'; file $$f 2>/dev/null || true
else
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --bin hyp --target $(HOST_TARGET)
	@f=target/$(HOST_TARGET)/release/hyp; ls -l $$f | awk '{printf "static binary: %s (%.1f MiB)\n", $$9, $$5/1048576}'; (ldd $$f 2>&1 | grep -Eq 'not a dynamic|statically linked' && echo "linkage: static") || { ldd $$f; exit 1; }
endif

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
