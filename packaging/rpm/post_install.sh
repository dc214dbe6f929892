# %post of the ferrocorn RPM ($1: 1 on install, 2 or more on upgrade).
# Creates the user and the directories and lets systemd see the units;
# starts and enables nothing (the admin enables ferrocorn@NAME.socket).
systemd-sysusers ferrocorn.conf || :
if [ -d /run/systemd/system ]; then
	systemd-tmpfiles --create ferrocorn.conf || :
fi
if [ ! -d /etc/ferrocorn ]; then
	install -d -m 0755 /etc/ferrocorn
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
	# On upgrade, restart what runs so that it runs the new binary; the
	# sockets stay open, so no connection is refused.
	if [ "$1" -ge 2 ]; then
		systemctl try-restart ferrocorn.service 'ferrocorn@*.service' || :
	fi
fi
exit 0
