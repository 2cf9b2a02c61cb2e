#!/bin/sh
# Builds certkeeper's Linux packages: dist/certkeeper_<version>_<arch>.deb
# and dist/certkeeper-<version>.<arch>.rpm, with nfpm pinned in
# packaging/tools/go.mod.
#
#   ./packaging/build.sh                # amd64
#   ARCHS="amd64 arm64" ./packaging/build.sh
#   DIST=/tmp/out ./packaging/build.sh  # elsewhere than dist/
#
# The version is the tag when HEAD is tagged vX.Y.Z, otherwise VERSION
# plus ~git<commit date>.<commit>, which sorts before the release in both
# dpkg and rpm.
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

archs=${ARCHS:-amd64}
dist=${DIST:-dist}
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	version=${tag#v}
else
	version=$(cat VERSION)
	if [ "$commit" != unknown ]; then
		version="$version~git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=7 HEAD)"
	fi
fi
# Reproducible: the same commit gives the same package.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

mkdir -p "$dist"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Man pages (certkeeper(1), one per command, certkeeper.toml(5) from
# docs/config.md) and bash/zsh/fish completion, generated from the command
# tree by the hidden `certkeeper gendocs`; dated SOURCE_DATE_EPOCH.
go run -ldflags "-X main.version=$version" ./cmd/certkeeper gendocs "$work/gen" docs/config.md >/dev/null
gzip -9n "$work"/gen/man1/*.1 "$work"/gen/man5/*.5

# nfpm, built from the pinned tools module.
(cd packaging/tools && go build -o "$work/nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm)

# Debian policy: a package with a Debian revision (nfpm's release, "-1")
# has /usr/share/doc/<package>/changelog.Debian.gz, gzip -9n. The rpm gets
# the same file as changelog.gz.
{
	printf 'certkeeper (%s-1) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from commit %s; see /usr/share/doc/certkeeper/README.md.\n\n' "$commit"
	printf ' -- certkeeper maintainers <certkeeper@example.org>  %s\n' \
		"$(date -u -R -d "@$SOURCE_DATE_EPOCH" 2>/dev/null || date -u -R)"
} | gzip -9n >"$work/changelog.gz"

for arch in $archs; do
	bin="$work/$arch/certkeeper"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$version -X main.commit=$commit" -o "$bin" ./cmd/certkeeper
	for packager in deb rpm; do
		# Debian keeps units in /lib/systemd/system (bookworm); Fedora and
		# RHEL in /usr/lib/systemd/system.
		# zsh: Debian reads vendor-completions, Fedora site-functions.
		unitdir=/usr/lib/systemd/system changelog=changelog.gz zshdir=/usr/share/zsh/site-functions
		[ "$packager" = deb ] && unitdir=/lib/systemd/system changelog=changelog.Debian.gz zshdir=/usr/share/zsh/vendor-completions
		# nfpm expands variables in some fields only; fill them all in here.
		sed -e "s|\${ARCH}|$arch|g" -e "s|\${VERSION}|$version|g" -e "s|\${BINARY}|$bin|g" \
			-e "s|\${UNITDIR}|$unitdir|g" -e "s|\${CHANGELOG}|$work/changelog.gz|g" -e "s|\${CHANGELOG_NAME}|$changelog|g" \
			-e "s|\${GEN}|$work/gen|g" -e "s|\${ZSHDIR}|$zshdir|g" \
			packaging/nfpm.yaml >"$work/nfpm-$packager.yaml"
		"$work/nfpm" package --config "$work/nfpm-$packager.yaml" --packager "$packager" --target "$dist/" >/dev/null
	done
done
ls "$dist"/certkeeper*"$version"*
