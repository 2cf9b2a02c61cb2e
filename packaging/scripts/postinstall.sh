#!/bin/sh
# certkeeper: after install or upgrade. dpkg calls it as `configure
# [OLD-VERSION]`, rpm as `1` (install) or `2` (upgrade). Safe to run again.
# The Debian branch does what dh_installsystemd would generate.
set -e

unit=certkeeper.service

case "$1" in
configure | abort-upgrade | abort-deconfigure | abort-remove)
	# Debian: enable on first install (was-enabled is true for a unit
	# deb-systemd-helper has never seen) and keep an admin's
	# `systemctl disable` on upgrades.
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper unmask "$unit" >/dev/null || true
		if deb-systemd-helper --quiet was-enabled "$unit"; then
			deb-systemd-helper enable "$unit" >/dev/null || true
		else
			deb-systemd-helper update-state "$unit" >/dev/null || true
		fi
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "${2:-}" ]; then
			# An upgrade: restart only if it runs.
			deb-systemd-invoke try-restart "$unit" >/dev/null || true
		else
			deb-systemd-invoke start "$unit" >/dev/null || true
		fi
	fi
	;;
1)
	# rpm, first install.
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		systemctl enable --now "$unit" >/dev/null 2>&1 || true
	elif command -v systemctl >/dev/null 2>&1; then
		systemctl enable "$unit" >/dev/null 2>&1 || true
	fi
	;;
2)
	# rpm, upgrade.
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		systemctl try-restart "$unit" >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
