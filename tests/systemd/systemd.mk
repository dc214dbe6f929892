# ferrocorn under a real systemd (PID 1), in throw-away systemd-nspawn
# containers (tests/systemd/harness). Root only; the first run per suite
# builds a cached rootfs (about 80 s, needs deb.debian.org once).
#
#   make systemd-test            bookworm (systemd 252, python3 3.11) + trixie (systemd 257, 3.13)
#   make systemd-test-bookworm   the nine checks of tests/systemd/inside.sh, .deb and wheel installed
#   make systemd-test-trixie     the same with Type=notify-reload (synchronous reload)
#
# SYSTEMD_TEST_BOOKWORM_CHECKS / SYSTEMD_TEST_TRIXIE_CHECKS="3 4" pick checks;
# SYSTEMD_TEST_NO_BUILD=1 reuses target/ as it is (see tests/systemd/run.sh).
#
# Logs, journals and artifacts: target/systemd-test/TIMESTAMP/SUITE/.

.PHONY: systemd-test systemd-test-bookworm systemd-test-trixie

systemd-test:
	tests/systemd/run.sh

systemd-test-bookworm:
	tests/systemd/run.sh bookworm

systemd-test-trixie:
	tests/systemd/run.sh trixie
