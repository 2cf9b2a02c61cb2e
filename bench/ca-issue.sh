#!/bin/sh
# Issuance speed: certkeeper's CA beside the openssl recipe admins use
# (ecparam, req, x509 per node, as the Glow and reign guides do), in one
# run, side by side (A, B, A, B ...), medians and ratios at the end.
#
#   bench/ca-issue.sh                 # ROUNDS=5 BATCH=1000 SINGLE=100
#   ROUNDS=3 SINGLE=50 bench/ca-issue.sh
#
# Measured per round:
#   ck-batch    `certkeeper ca issue node --from-file` with BATCH ids, one call
#   ck-single   SINGLE `certkeeper ca issue node ID` invocations, one after another
#   openssl     SINGLE runs of the three-command recipe, one after another
# All EC P-256, into a fresh CA directory each round. The machine may be
# shared: read the medians, not one run.
#
# BENCH_DIR (default: bench/ in this checkout) is where the CAs are made.
# Creating thousands of files is mostly the file system's inode allocator:
# on ext4, a /tmp that tests fill and empty all day is several times slower
# than a quiet directory (it scans past recently deleted inodes), so the
# default keeps off /tmp. Each round uses new directories; all are removed
# at the end.
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
BATCH=${BATCH:-1000}
SINGLE=${SINGLE:-100}

work=$(mktemp -d "${BENCH_DIR:-$PWD/bench}/.run.XXXXXX")
trap 'rm -rf "$work"' EXIT
go build -o "$work/certkeeper" ./cmd/certkeeper
ck="$work/certkeeper"

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

i=0
while [ $i -lt "$BATCH" ]; do echo "bench-node-$i"; i=$((i + 1)); done >"$work/ids"

# The openssl CA and extensions: the Glow wiki's `node` section, with SANs.
cat >"$work/ext.cnf" <<'EOF'
[ node ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

ck_batch() {
	d="$work/ckb$r"
	"$ck" ca init --dir "$d" --name bench >/dev/null
	t0=$(now_ms)
	"$ck" ca issue --dir "$d" node --from-file "$work/ids" >/dev/null
	t1=$(now_ms)
	n=$(ls "$d/nodes" | wc -l)
	[ "$n" -eq "$BATCH" ] || { echo "ck-batch: $n bundles, want $BATCH" >&2; exit 1; }
	echo $((t1 - t0))
}

ck_single() {
	d="$work/cks$r"
	"$ck" ca init --dir "$d" --name bench >/dev/null
	t0=$(now_ms)
	i=0
	while [ $i -lt "$SINGLE" ]; do
		"$ck" ca issue --dir "$d" node "single-$i" >/dev/null
		i=$((i + 1))
	done
	t1=$(now_ms)
	echo $((t1 - t0))
}

openssl_single() {
	d="$work/ossl$r"; mkdir -p "$d"
	(
		cd "$d"
		openssl ecparam -genkey -name prime256v1 -noout -out ca.key 2>/dev/null
		openssl req -new -x509 -key ca.key -subj /CN=bench -days 3650 -out ca.crt 2>/dev/null
		t0=$(now_ms)
		i=0
		while [ $i -lt "$SINGLE" ]; do
			openssl ecparam -genkey -name prime256v1 -noout -out "n$i.key"
			openssl req -new -key "n$i.key" -subj "/CN=single-$i" -out "n$i.csr"
			openssl x509 -req -in "n$i.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 \
				-extfile ../ext.cnf -extensions node -out "n$i.crt" 2>/dev/null
			i=$((i + 1))
		done
		t1=$(now_ms)
		echo $((t1 - t0))
	)
}

echo "certkeeper $("$ck" version)"
echo "openssl $(openssl version)"
echo "cores: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)"
echo "rounds: $ROUNDS  batch: $BATCH  single: $SINGLE"
echo
printf '%-6s %14s %18s %18s\n' round "ck-batch ms" "ck-single ms/cert" "openssl ms/cert"
r=1
while [ $r -le "$ROUNDS" ]; do
	# Alternate the order each round so neither side always runs first.
	if [ $((r % 2)) -eq 1 ]; then
		b=$(ck_batch); o=$(openssl_single); s=$(ck_single)
	else
		s=$(ck_single); o=$(openssl_single); b=$(ck_batch)
	fi
	echo "$b" >>"$work/batch"
	echo "$s $SINGLE" | awk '{printf "%.2f\n", $1/$2}' >>"$work/single"
	echo "$o $SINGLE" | awk '{printf "%.2f\n", $1/$2}' >>"$work/openssl"
	printf '%-6s %14s %18s %18s\n' "$r" "$b" "$(tail -1 "$work/single")" "$(tail -1 "$work/openssl")"
	r=$((r + 1))
done

mb=$(median <"$work/batch")
ms=$(median <"$work/single")
mo=$(median <"$work/openssl")
echo
echo "medians:"
echo "  ca issue, $BATCH ids in one call:   $mb ms ($(echo "$mb $BATCH" | awk '{printf "%.3f", $1/$2}') ms per bundle)"
echo "  ca issue, one id per invocation:    $ms ms per certificate"
echo "  openssl recipe, per node:           $mo ms per certificate"
echo "ratios:"
echo "  single invocations vs openssl:      $(echo "$mo $ms" | awk '{printf "%.1fx faster", $1/$2}')"
echo "  one call of $BATCH vs openssl x $BATCH:  $(echo "$mo $BATCH $mb" | awk '{printf "%.0fx faster (openssl: %.1f s)", $1*$2/$3, $1*$2/1000}')"
