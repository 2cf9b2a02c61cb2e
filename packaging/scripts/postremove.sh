#!/bin/sh
# certkeeper: after removal. dpkg calls it as `remove`, `purge`, `upgrade
# …`; rpm as `0` (removal) or `1` (upgrade). Remove keeps the config
# (a conffile) and the state; purge deletes both and every trace of the
# units' enablement.
set -e

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi

case "$1" in
remove)
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper mask certkeeper.service >/dev/null || true
	fi
	;;
purge)
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge certkeeper.service >/dev/null || true
		deb-systemd-helper unmask certkeeper.service >/dev/null || true
	fi
	# The timer is enabled by hand on the admin host, not through
	# deb-systemd-helper: drop its link too.
	rm -f /etc/systemd/system/timers.target.wants/certkeeper-ca-renew.timer
	# State: inboxes, status, generations. A cluster CA in
	# /var/lib/certkeeper/ca (the admin host's) is not state: its key
	# signs every node's certificate, so purge keeps it and says so.
	if [ -d /var/lib/certkeeper/ca ]; then
		find /var/lib/certkeeper -mindepth 1 -maxdepth 1 ! -name ca -exec rm -rf {} +
		echo "certkeeper: kept the cluster CA in /var/lib/certkeeper/ca; delete it yourself if you mean to" >&2
	else
		rm -rf /var/lib/certkeeper
	fi
	;;
esac
exit 0
