#!/bin/sh
# Proves what certkeeper ships: the cross-builds, the units' exposure, and
# the .deb end to end. Called by scripts/test; runs alone too:
#
#   ./packaging/check.sh
#
# 1. linux/amd64, linux/arm64, windows/amd64 and darwin/arm64 build;
# 2. systemd-analyze verify is clean on the units, and systemd-analyze
#    security --offline=yes rates each service at most $MAX_EXPOSURE;
# 3. the .deb and .rpm build (packaging/build.sh); the .rpm's list where
#    rpm is installed; lintian reports no error on the .deb, and no tag
#    about the man pages or completions (no-manual-page, bad-whatis-entry,
#    manpage-has-errors-from-man, ...);
# 4. as root with dpkg: dpkg -i, the file list with modes and owners (man
#    pages and completion too), the units' Documentation= and the starter
#    config's paths existing, man certkeeper rendering, bash completion,
#    `certkeeper version` from PATH, systemd-analyze verify on the
#    installed units, the unit enabled, the shipped config loading, a
#    second dpkg -i (idempotent), dpkg -r (config and state stay), dpkg -P
#    (nothing left but a cluster CA, on purpose).
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
MAX_EXPOSURE=${MAX_EXPOSURE:-3.0}

fail() {
	echo "packaging/check.sh: $*" >&2
	exit 1
}
root=false
[ "$(id -u)" = 0 ] && root=true

echo "== cross-builds"
for target in linux/amd64 linux/arm64 windows/amd64 darwin/arm64; do
	CGO_ENABLED=0 GOOS=${target%/*} GOARCH=${target#*/} go build -trimpath -o /dev/null ./cmd/certkeeper ||
		fail "cross-build for $target failed"
	echo "   $target ok"
done

work=$(mktemp -d)
cleanup() {
	if [ "${installed:-false}" = true ]; then
		dpkg -P certkeeper >/dev/null 2>&1 || true
		rm -rf /var/lib/certkeeper
	fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "== systemd units"
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify wants ExecStart's program to exist.
	for u in systemd/*.service systemd/*.timer; do
		sed 's|=/usr/bin/certkeeper |=/bin/true |' "$u" >"$work/${u#systemd/}"
	done
	out=$(systemd-analyze verify "$work"/*.service "$work"/*.timer 2>&1) || fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify is not clean: $out"
	for u in "$work"/*.service; do
		figure=$(systemd-analyze security --offline=yes "$u" 2>&1 |
			sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p')
		[ -n "$figure" ] || fail "no exposure figure for ${u##*/}"
		awk -v e="$figure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' ||
			fail "${u##*/}: exposure $figure is above $MAX_EXPOSURE"
		echo "   ${u##*/}: exposure $figure (at most $MAX_EXPOSURE)"
	done
else
	echo "   skipped: systemd-analyze is missing (apt-get install systemd)"
fi

echo "== packages"
DIST="$work/dist" ./packaging/build.sh >"$work/build.log" 2>&1 || fail "packaging/build.sh failed: $(cat "$work/build.log")"
sed 's/^/   /' "$work/build.log"
deb=$(ls "$work"/dist/*.deb)
ls "$work"/dist/*.rpm >/dev/null || fail "no .rpm built"
version=$(dpkg-deb -f "$deb" Version 2>/dev/null || echo "")

if command -v rpm >/dev/null 2>&1; then
	rpm -qlvp "$work"/dist/*.rpm 2>/dev/null | awk '{print $1, $3":"$4, $NF}' >"$work/rpmlist"
	for want in "-rwxr-xr-x root:root /usr/bin/certkeeper" "-rw-r--r-- root:root /usr/lib/systemd/system/certkeeper.service" \
		"drwx------ root:root /etc/certkeeper" "-rw------- root:root /etc/certkeeper/certkeeper.toml" \
		"drwx--x--x root:root /var/lib/certkeeper"; do
		grep -qxF -- "$want" "$work/rpmlist" || fail ".rpm lacks $want"
	done
	[ "$(rpm -qpc "$work"/dist/*.rpm 2>/dev/null)" = /etc/certkeeper/certkeeper.toml ] || fail ".rpm: the config is not %config"
	echo "   .rpm contents, modes and %config ok (not installed: this is Debian)"
fi

echo "== lintian"
if ! command -v lintian >/dev/null 2>&1 && $root && command -v apt-get >/dev/null 2>&1; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi
if command -v lintian >/dev/null 2>&1; then
	# lintian exits non-zero on errors; warnings are printed for the reader.
	lintian --tag-display-limit 0 "$deb" >"$work/lintian" 2>&1 || true
	grep -v '^running with root' "$work/lintian" | sed 's/^/   /'
	! grep -q '^E:' "$work/lintian" || fail "lintian reports errors"
	# The issue's "lintian clean of no-manual-page": warnings pass, but
	# none about the man pages or the shell completions the package ships.
	! grep -E '^[EWI]: [^ ]+: [^ ]*(manual-page|manpage|whatis|groff|completion)' "$work/lintian" >"$work/lintian.docs" ||
		fail "lintian reports tags about the man pages or completions: $(cat "$work/lintian.docs")"
	echo "   no errors; no tag about the man pages or completions (no-manual-page and the like)"
else
	echo "   skipped: lintian is missing and this is not root on Debian"
fi

echo "== dpkg -i / -r / -P"
if ! $root || ! command -v dpkg >/dev/null 2>&1; then
	echo "   skipped: installing a package needs root and dpkg (the CI machine is root on Debian)"
	exit 0
fi
if dpkg-query -W -f '${Status}' certkeeper 2>/dev/null | grep -q 'install ok'; then
	echo "   skipped: certkeeper is installed on this machine already; this test would replace it"
	exit 0
fi
[ ! -e /var/lib/certkeeper ] && [ ! -e /etc/certkeeper ] ||
	fail "/etc/certkeeper or /var/lib/certkeeper exists without the package; remove it first"

installed=true
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"

# path, type and mode as ls shows them, owner
expect() {
	while read -r path mode owner; do
		[ -e "$path" ] || fail "$path is missing"
		got=$(stat -c '%A %U:%G' "$path")
		want="$mode $owner"
		[ "$got" = "$want" ] || fail "$path: $got, want $want"
	done
}
expect <<'LIST'
/usr/bin/certkeeper -rwxr-xr-x root:root
/lib/systemd/system/certkeeper.service -rw-r--r-- root:root
/lib/systemd/system/certkeeper-ca-renew.service -rw-r--r-- root:root
/lib/systemd/system/certkeeper-ca-renew.timer -rw-r--r-- root:root
/etc/certkeeper drwx------ root:root
/etc/certkeeper/certkeeper.toml -rw------- root:root
/var/lib/certkeeper drwx--x--x root:root
/usr/share/doc/certkeeper/README.md -rw-r--r-- root:root
/usr/share/doc/certkeeper/docs/README.md -rw-r--r-- root:root
/usr/share/doc/certkeeper/docs/config.md -rw-r--r-- root:root
/usr/share/doc/certkeeper/docs/install.md -rw-r--r-- root:root
/usr/share/doc/certkeeper/docs/guides/flocker.md -rw-r--r-- root:root
/usr/share/doc/certkeeper/copyright -rw-r--r-- root:root
/usr/share/doc/certkeeper/changelog.Debian.gz -rw-r--r-- root:root
/usr/share/man/man1/certkeeper.1.gz -rw-r--r-- root:root
/usr/share/man/man1/certkeeper-ca-issue.1.gz -rw-r--r-- root:root
/usr/share/man/man1/certkeeper-fleet-status.1.gz -rw-r--r-- root:root
/usr/share/man/man5/certkeeper.toml.5.gz -rw-r--r-- root:root
/usr/share/bash-completion/completions/certkeeper -rw-r--r-- root:root
/usr/share/zsh/vendor-completions/_certkeeper -rw-r--r-- root:root
/usr/share/fish/vendor_completions.d/certkeeper.fish -rw-r--r-- root:root
LIST
echo "   files, modes and owners ok"

# The package owns exactly these, and no file outside its directories.
dpkg -L certkeeper | sort >"$work/list"
for p in /usr/bin/certkeeper /lib/systemd/system/certkeeper.service /etc/certkeeper/certkeeper.toml /var/lib/certkeeper; do
	grep -qx "$p" "$work/list" || fail "dpkg -L certkeeper lacks $p"
done
grep -q '^/etc/certkeeper/certkeeper.toml$' /var/lib/dpkg/info/certkeeper.conffiles ||
	fail "the config is not a conffile"

[ "$(command -v certkeeper)" = /usr/bin/certkeeper ] || fail "certkeeper is not /usr/bin/certkeeper on PATH"
v=$(certkeeper version) || fail "certkeeper version failed"
case "$v" in "certkeeper ${version%-*}"*) ;; *) fail "certkeeper version says \"$v\", the package is $version" ;; esac
echo "   $v"

if command -v systemd-analyze >/dev/null 2>&1; then
	out=$(systemd-analyze verify /lib/systemd/system/certkeeper.service \
		/lib/systemd/system/certkeeper-ca-renew.service /lib/systemd/system/certkeeper-ca-renew.timer 2>&1) ||
		fail "systemd-analyze verify (installed): $out"
	[ -z "$out" ] || fail "systemd-analyze verify (installed) is not clean: $out"
	echo "   systemd-analyze verify of the installed units is clean"
fi
[ -L /etc/systemd/system/multi-user.target.wants/certkeeper.service ] ||
	fail "certkeeper.service is not enabled after the first install"
echo "   certkeeper.service enabled"

# What the package points the admin at exists: every Documentation= of the
# units, every /usr/share path the starter config names.
for ref in $(sed -n 's/^Documentation=//p' /lib/systemd/system/certkeeper*.service /lib/systemd/system/certkeeper*.timer); do
	case "$ref" in
	file:*) [ -e "${ref#file:}" ] || fail "a unit's Documentation=$ref does not exist" ;;
	man:*) page=${ref#man:} && man -w "${page%(*}" >/dev/null 2>&1 || fail "a unit's Documentation=$ref has no man page" ;;
	esac
done
for p in $(grep -o '/usr/share/[^ )`,]*' /etc/certkeeper/certkeeper.toml | sed 's/[.]$//'); do
	[ -e "$p" ] || fail "the starter config names $p, which does not exist"
done
echo "   the units' Documentation= and the starter config's paths exist"

# Right after the install, check tells the truth: nothing configured yet,
# OK, not CRITICAL over the example bundle.
out=$(certkeeper check 2>&1) || fail "check of the starter config: exit $?: $out"
case "$out" in "CERTKEEPER OK - "*"nothing configured yet"*) ;; *) fail "check of the starter config says: $out" ;; esac
echo "   check of the starter config: $out"

# The man pages render, and bash completion loads and completes.
if command -v man >/dev/null 2>&1; then
	for page in certkeeper certkeeper-install certkeeper.toml; do
		out=$(MANWIDTH=80 MANPAGER=cat man "$page" 2>"$work/man.err") || fail "man $page: $(cat "$work/man.err")"
		echo "$out" | grep -q "certkeeper" || fail "man $page renders nothing"
	done
	echo "   man certkeeper, certkeeper-install and certkeeper.toml render"
fi
if [ -r /usr/share/bash-completion/bash_completion ]; then
	got=$(bash -c '. /usr/share/bash-completion/bash_completion; . /usr/share/bash-completion/completions/certkeeper
		COMP_WORDS=(certkeeper ver); COMP_CWORD=1; COMP_LINE="certkeeper ver"; COMP_POINT=${#COMP_LINE}
		__start_certkeeper certkeeper ver certkeeper; printf "%s\n" "${COMPREPLY[@]}"' 2>/dev/null) || fail "bash completion does not load"
	echo "$got" | grep -q '^verify' && echo "$got" | grep -q '^version' || fail "bash completion of 'certkeeper ver' gave: $got"
	echo "   bash completion loads and completes 'certkeeper ver' to verify, version"
else
	echo "   bash completion skipped: bash-completion is missing (apt-get install bash-completion)"
fi

# The shipped config loads with the real loader, and the binary would
# install exactly the unit the package ships.
certkeeper service install --dry-run --config /etc/certkeeper/certkeeper.toml >"$work/preview" 2>"$work/preview.err" ||
	fail "the shipped config does not load: $(cat "$work/preview.err")"
tail -n +2 "$work/preview" >"$work/unit"
cmp -s "$work/unit" /lib/systemd/system/certkeeper.service ||
	fail "certkeeper service install would write another unit than the package's: $(diff "$work/unit" /lib/systemd/system/certkeeper.service)"
echo "   the shipped config loads; service install would write the packaged unit"

# Again: maintainer scripts are idempotent, and an upgrade keeps the
# admin's config.
echo '# edited by the admin' >>/etc/certkeeper/certkeeper.toml
dpkg -i "$deb" >/dev/null || fail "a second dpkg -i failed"
grep -q 'edited by the admin' /etc/certkeeper/certkeeper.toml || fail "reinstalling replaced the admin's config"
[ -L /etc/systemd/system/multi-user.target.wants/certkeeper.service ] || fail "reinstalling disabled the unit"
echo "   a second dpkg -i keeps the config and the enablement"

# Some state, as the agent would leave it.
mkdir -p /var/lib/certkeeper/inbox/example
echo x >/var/lib/certkeeper/inbox/example/node.crt

dpkg -r certkeeper >/dev/null || fail "dpkg -r failed"
[ ! -e /usr/bin/certkeeper ] || fail "dpkg -r left /usr/bin/certkeeper"
[ ! -e /lib/systemd/system/certkeeper.service ] || fail "dpkg -r left the unit"
[ "$(stat -c '%a' /etc/certkeeper/certkeeper.toml)" = 600 ] || fail "dpkg -r did not keep the config (0600)"
[ -e /var/lib/certkeeper/inbox/example/node.crt ] || fail "dpkg -r removed the state"
echo "   dpkg -r: binary and units gone; config and state kept"

# A cluster CA is not state: purge keeps it and says so.
mkdir -p /var/lib/certkeeper/ca && echo key >/var/lib/certkeeper/ca/cluster.key
dpkg -P certkeeper >"$work/purge" 2>&1 || fail "dpkg -P failed: $(cat "$work/purge")"
installed=false
left=$(find /etc/certkeeper /var/lib/certkeeper /usr/share/doc/certkeeper /lib/systemd/system /etc/systemd/system \
	/var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
	-name '*certkeeper*' 2>/dev/null | grep -v '^/var/lib/certkeeper$' | grep -v '^/var/lib/certkeeper/ca' || true)
[ -z "$left" ] || fail "dpkg -P left: $left"
[ "$(ls /var/lib/certkeeper)" = ca ] || fail "dpkg -P left in /var/lib/certkeeper: $(ls /var/lib/certkeeper)"
grep -q 'kept the cluster CA' "$work/purge" || fail "dpkg -P did not say it kept the CA"
rm -rf /var/lib/certkeeper
echo "   dpkg -P: nothing left (but a cluster CA, kept on purpose)"
echo "== packaging checks passed"
