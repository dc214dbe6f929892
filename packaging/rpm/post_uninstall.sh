# %postun of the ferrocorn RPM ($1: 0 on erase, 1 or more on upgrade).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
fi
if [ "$1" -eq 0 ]; then
	# Only if empty: the admin's NAME.conf files and any data stay. The
	# ferrocorn user stays too (files may still belong to its UID).
	rmdir /etc/ferrocorn /var/lib/ferrocorn 2>/dev/null || :
fi
exit 0
