# The deployments people run, end to end, under a real systemd (PID 1) in a
# throw-away container (tests/deployments/run.sh). Root only; the first run
# builds the container image (nginx-light, supervisor, runit; about 2 min,
# needs deb.debian.org once) and downloads the Python packages (PyPI).
#
#   make deployments-test   on Debian 12 (Python 3.11) and 13 (3.13): Django+systemd,
#                           Flask+nginx+supervisor, Zope (PasteDeploy
#                           and gunicornapp), OpenERP-style hooks, runit
#
# DEPLOYMENTS_CHECKS="1 4" picks deployments; DEPLOYMENTS_NO_BUILD=1 reuses
# the newest wheel. Logs: target/deployments-test/TIMESTAMP/SUITE/.

.PHONY: deployments-test

deployments-test:
	tests/deployments/run.sh
