# %preun of the ferrocorn RPM ($1: 0 on erase, 1 or more on upgrade).
# On erase, stop and disable the units and every instance of the templates
# while their files still exist (as Fedora's %systemd_preun does).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
	instances=$(systemctl show --property=Id --value 'ferrocorn@*.socket' 'ferrocorn@*.service' 2>/dev/null || :)
	# shellcheck disable=SC2086 # one word per unit name
	systemctl --no-reload disable --now ferrocorn.socket ferrocorn.service $instances >/dev/null 2>&1 || :
fi
exit 0
