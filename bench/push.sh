#!/bin/bash
# Pushes a three-file bundle to K local sshd nodes, two ways, side by side:
#   A  certkeeper push --install: one SSH connection per node; each file
#      under a temporary name, 0600, fsync, final mode, posix-rename.
#   B  parallel-scp, then parallel-ssh for chmod and mv into place (what the
#      Flocker guide has admins do by hand), the same job with OpenSSH.
# Both at the same concurrency, host keys checked on both sides
# (StrictHostKeyChecking=yes against a known_hosts file). Each node is its
# own sshd on its own loopback port with its own directory. Runs A,B,A,B…
# ROUNDS times for each K and prints the medians and the ratio.
#
# Usage: bench/push.sh            (as root; installs pssh if missing)
#   KS="50 100" ROUNDS=5 CONCURRENCY=32 KEEP=1 bench/push.sh
set -eu
cd "$(dirname "$0")/.."
KS=${KS:-"50 100"}
ROUNDS=${ROUNDS:-5}
CONCURRENCY=${CONCURRENCY:-32}
SSHD=/usr/sbin/sshd

if [ "$(id -u)" != 0 ]; then
	echo "bench/push.sh: run as root (sshd needs it to serve logins)" >&2
	exit 1
fi
need=""
command -v parallel-scp >/dev/null 2>&1 || need="$need pssh"
[ -x $SSHD ] || need="$need openssh-server"
command -v ssh >/dev/null 2>&1 || need="$need openssh-client"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
if [ -n "$need" ]; then
	echo "== installing:$need"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd

work=$(mktemp -d /tmp/certkeeper-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
	done
	[ "${KEEP:-}" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

echo "== building certkeeper"
go build -o "$work/certkeeper" ./cmd/certkeeper

maxk=0
for k in $KS; do [ "$k" -gt "$maxk" ] && maxk=$k; done
ids=()
for i in $(seq -f %03g 1 "$maxk"); do ids+=("node-$i"); done

echo "== a CA and one node certificate naming all $maxk nodes (openssl)"
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out cluster.crt \
	-subj /CN=bench-cluster -days 2 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
sans=$(printf 'DNS:%s,' "${ids[@]}")
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout node.key -out node.csr -subj /CN=node-001 >/dev/null 2>&1
openssl x509 -req -in node.csr -CA cluster.crt -CAkey ca.key -CAcreateserial -out node.crt -days 1 \
	-extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "${sans%,}") >/dev/null 2>&1
chmod 600 node.key
mkdir -p ca/nodes upload
for id in "${ids[@]}"; do
	mkdir -p "ca/nodes/$id"
	cp cluster.crt node.crt node.key "ca/nodes/$id/"
done
cp cluster.crt node.crt node.key upload/

echo "== starting $maxk sshd (one per node)"
ssh-keygen -q -t ed25519 -N "" -f host_key
ssh-keygen -q -t ed25519 -N "" -f id_ed25519
port0=$((20000 + RANDOM % 20000))
: >known_hosts
for n in $(seq 1 "$maxk"); do
	id=${ids[$((n - 1))]}
	d="$work/nodes/$id"
	mkdir -p "$d/live" "$d/incoming"
	port=$((port0 + n))
	cat >"$d/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $work/id_ed25519.pub
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp -d $d
SetEnv HOME=$d NODE_DIR=$d
LogLevel ERROR
EOF
	$SSHD -D -e -f "$d/sshd_config" 2>>"$d/sshd.log" &
	pids+=($!)
	echo "[127.0.0.1]:$port $(cut -d' ' -f1-2 host_key.pub)" >>known_hosts
	echo "root@127.0.0.1:$port" >>"hosts-all"
done
for n in $(seq 1 "$maxk"); do
	port=$((port0 + n))
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.05
	done
done

inventory() { # K
	{
		printf '# inventory\n[defaults]\nuser = "root"\nidentity_file = "%s"\nknown_hosts = "%s"\nlayout = "flocker-node"\n' "$work/id_ed25519" "$work/known_hosts"
		for n in $(seq 1 "$1"); do
			printf '\n[[node]]\nid = "%s"\naddress = "127.0.0.1:%d"\ntarget = "%s"\n' "${ids[$((n - 1))]}" $((port0 + n)) "$work/nodes/${ids[$((n - 1))]}/live"
		done
	} >"inventory-$1.toml"
	head -n "$1" hosts-all >"hosts-$1"
}

reset() { # K: empty every node's directories, so each run does the whole job
	for n in $(seq 1 "$1"); do rm -f "$work/nodes/${ids[$((n - 1))]}"/live/* "$work/nodes/${ids[$((n - 1))]}"/incoming/*; done
}

check() { # K: every node holds the three files with the right modes
	for n in $(seq 1 "$1"); do
		d="$work/nodes/${ids[$((n - 1))]}/live"
		[ "$(stat -c %a "$d/node.key")" = 600 ] && [ "$(stat -c %a "$d/node.crt")" = 644 ] && [ -f "$d/cluster.crt" ] || {
			echo "bench: node ${ids[$((n - 1))]} is missing files after a run" >&2
			exit 1
		}
	done
}

sshopts=(-O StrictHostKeyChecking=yes -O "UserKnownHostsFile=$work/known_hosts" -O GlobalKnownHostsFile=/dev/null
	-O "IdentityFile=$work/id_ed25519" -O IdentitiesOnly=yes -O BatchMode=yes)

run_a() { # K
	"$work/certkeeper" push --inventory "inventory-$1.toml" --ca-dir "$work/ca" --install --concurrency "$CONCURRENCY" >"out-a-$1.txt"
}
run_b() { # K
	parallel-scp -p "$CONCURRENCY" -h "hosts-$1" "${sshopts[@]}" -x "-F /dev/null" upload/cluster.crt upload/node.crt upload/node.key incoming/ >"out-b-$1.txt"
	parallel-ssh -p "$CONCURRENCY" -h "hosts-$1" "${sshopts[@]}" -x "-F /dev/null" \
		'cd "$NODE_DIR" && chmod 600 incoming/node.key && chmod 644 incoming/node.crt incoming/cluster.crt && mv incoming/cluster.crt live/ && mv incoming/node.crt live/ && mv incoming/node.key live/' >>"out-b-$1.txt"
}

timed() { # command... -> seconds on stdout
	local s e
	s=$(date +%s.%N)
	"$@" || { echo "bench: $* failed; see $work/out-*" >&2; KEEP=1; exit 1; }
	e=$(date +%s.%N)
	echo "$e - $s" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (shared: figures are noisy)"
summary=""
for k in $KS; do
	inventory "$k"
	reset "$k"; run_a "$k"; check "$k" # warm-up, and proof that A works
	reset "$k"; run_b "$k"; check "$k" # and B
	: >"times-a-$k"; : >"times-b-$k"
	for r in $(seq 1 "$ROUNDS"); do
		reset "$k"; ta=$(timed run_a "$k"); check "$k"
		reset "$k"; tb=$(timed run_b "$k"); check "$k"
		echo "$ta" >>"times-a-$k"; echo "$tb" >>"times-b-$k"
		printf 'K=%-4s round %d: certkeeper %.2fs   pscp+pssh %.2fs\n' "$k" "$r" "$ta" "$tb"
	done
	ma=$(median <"times-a-$k"); mb=$(median <"times-b-$k")
	summary="$summary$(printf 'K=%-4s median certkeeper %.2fs   pscp+pssh %.2fs   ratio %.1fx' "$k" "$ma" "$mb" "$(echo "$mb / $ma" | bc -l)")\n"
done
echo "== medians over $ROUNDS rounds, concurrency $CONCURRENCY, load now $(cut -d' ' -f1-3 /proc/loadavg)"
printf "$summary"
