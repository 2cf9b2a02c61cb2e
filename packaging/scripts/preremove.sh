#!/bin/sh
# certkeeper: before removal. dpkg calls it as `remove` or `upgrade
# NEW-VERSION`, rpm as `0` (removal) or `1` (upgrade). Only a removal stops
# the agent; an upgrade restarts it afterwards (postinstall).
set -e

case "$1" in
remove)
	if [ -d /run/systemd/system ]; then
		deb-systemd-invoke stop certkeeper.service certkeeper-ca-renew.timer >/dev/null || true
	fi
	;;
0)
	if command -v systemctl >/dev/null 2>&1; then
		systemctl --no-reload disable --now certkeeper.service certkeeper-ca-renew.timer >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
