# Packages, included by the top Makefile (which sets SHELL=bash and CARGO).
#
#   make packaging-tools   cargo-deb and cargo-generate-rpm, if missing (crates.io)
#   make deb               target/debian/ferrocorn_<version>-1_amd64.deb
#   make rpm               target/generate-rpm/ferrocorn-<version>-1.x86_64.rpm
#   make units-check       the shipped units: single-app units in step with the
#                          templates, systemd-analyze security exposure <= 2.0
#
# Both packages are built from a clean checkout after `make packaging-tools`.
# What they contain is declared in Cargo.toml ([package.metadata.deb] and
# [package.metadata.generate-rpm]); the maintainer scripts are in
# packaging/debian/ and packaging/rpm/. Both ship the master and the native
# modules: the stable-ABI one (`cargo build --release` builds it with the
# master) and one per CPython at hand (`make native-modules`).

# The versions the metadata was written and checked against.
CARGO_DEB_VERSION ?= 3.8.0
CARGO_GENERATE_RPM_VERSION ?= 0.21.1

# Highest acceptable `systemd-analyze security` exposure, times ten.
UNITS_MAX_EXPOSURE ?= 20

.PHONY: packaging-tools deb rpm units-check

# `cargo install --list` prints "cargo-deb v3.8.0:"; install only what is
# missing (an other version installed is left alone, with a note).
packaging-tools:
	@for tool in cargo-deb@$(CARGO_DEB_VERSION) cargo-generate-rpm@$(CARGO_GENERATE_RPM_VERSION); do \
		name=$${tool%@*}; version=$${tool#*@}; \
		installed=$$($(CARGO) install --list | sed -n "s/^$$name v\([^:]*\):$$/\1/p"); \
		if [ -z "$$installed" ]; then \
			$(CARGO) install --locked "$$name@$$version"; \
		elif [ "$$installed" != "$$version" ]; then \
			echo "$$name $$installed is installed (the metadata was checked with $$version); keeping it"; \
		else \
			echo "$$name $$installed is installed"; \
		fi; \
	done

# The package's version is Cargo's plus the revision in the changelog's top
# entry; a version bump needs a new entry there (dch -v X.Y.Z-1).
deb: units-check native-modules
	@cargo_version=$$(sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1); \
	changelog_version=$$(sed -n '1s/^ferrocorn (\([^)]*\)-[^-)]*).*/\1/p' packaging/debian/changelog); \
	if [ "$$cargo_version" != "$$changelog_version" ]; then \
		echo "packaging/debian/changelog is at $$changelog_version, Cargo.toml at $$cargo_version: add an entry" >&2; \
		exit 1; \
	fi
	$(CARGO) build --release
	$(CARGO) deb --no-build --output target/debian/

# cargo-generate-rpm does not strip: package a copy without the line tables
# that [profile.release] keeps (the symbol table stays, for backtraces).
rpm: units-check native-modules
	$(CARGO) build --release
	install -d target/rpm
	strip --strip-debug -o target/rpm/ferrocorn target/release/ferrocorn
	strip --strip-debug -o target/rpm/_native.abi3.so target/release/libferrocorn.so
	rm -f target/generate-rpm/ferrocorn-*.rpm
	$(CARGO) generate-rpm --auto-req builtin
	@ls target/generate-rpm/ferrocorn-*.rpm

# ferrocorn.service/.socket are the templates for one instance named
# "ferrocorn": every non-comment line must match after substituting %i.
units-check:
	@for unit in service socket; do \
		diff -u --label systemd/ferrocorn@.$$unit --label systemd/ferrocorn.$$unit \
			<(grep -v '^#' systemd/ferrocorn@.$$unit \
				| sed -e 's/ferrocorn@%i\./ferrocorn./g' -e 's|/%i\.|/ferrocorn.|g' -e 's/ (%i)$$//') \
			<(grep -v '^#' systemd/ferrocorn.$$unit) \
		|| { echo "systemd/ferrocorn.$$unit is out of step with systemd/ferrocorn@.$$unit" >&2; exit 1; }; \
	done
	@if command -v systemd-analyze >/dev/null; then \
		for unit in systemd/ferrocorn@.service systemd/ferrocorn.service; do \
			systemd-analyze security --offline=yes --threshold=$(UNITS_MAX_EXPOSURE) $$unit \
				| tail -n 1 || { echo "$$unit: exposure above $(UNITS_MAX_EXPOSURE)/10" >&2; exit 1; }; \
		done; \
	else \
		echo "systemd-analyze not found: exposure not measured"; \
	fi
