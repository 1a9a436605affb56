#!/usr/bin/env bash
# dsrun --hostfile over ssh on this machine: starts a private sshd on 127.0.0.1 (its own
# host key, port and authorized key, nothing of the system's configuration touched), then
# runs a 2-node cluster whose nodes dsrun starts through ssh, which must answer a prompt,
# and checks that no node process is left. Exit 77 (ctest: skipped, with the reason)
# where it cannot run: not root, or openssh-server not installed (scripts/setup.sh
# installs it).
# Usage: ssh_localhost.sh BUILD_DIR
set -euo pipefail
build=$1

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "a private sshd logging in as the current user needs root here"
[ -x /usr/sbin/sshd ] || skip "sshd is not installed (apt install openssh-server)"
command -v ssh-keygen >/dev/null && command -v ssh >/dev/null || skip "ssh / ssh-keygen not installed"

dir=$(mktemp -d /tmp/dsrt-ssh.XXXXXX)
port=$((22000 + $$ % 1000))
dsrt_port=$((23000 + $$ % 500 * 2))   # and +1: below the ephemeral ports (32768 and up)
cleanup() {
  [ -f "$dir/sshd.pid" ] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"
cat > "$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $dir/sshd.pid
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -f "$dir/sshd_config"
ssh_cmd="ssh -p $port -i $dir/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -tt"
for _ in $(seq 50); do $ssh_cmd 127.0.0.1 true >/dev/null 2>&1 && break; sleep 0.1; done
$ssh_cmd 127.0.0.1 true >/dev/null 2>&1 || { echo "FAIL: the private sshd does not answer"; exit 1; }

"$build/apps/dsgen/dsgen" --preset tiny-llama --seed 1 --threads 1 --out "$dir/tiny-llama" >/dev/null
printf '# head, then a worker\n127.0.0.1\n127.0.0.1\n' > "$dir/hosts"
out=$(timeout 300 "$build/apps/dsrun/dsrun" --hostfile "$dir/hosts" --ssh "$ssh_cmd" --model "$dir/tiny-llama" \
        --port "$dsrt_port" --run-dir "$dir/run" --threads 1 --prompt "hello" --max-tokens 4 2>&1) || {
  echo "$out"; cat "$dir"/run/node-*.log 2>/dev/null; echo "FAIL: dsrun --hostfile failed"; exit 1; }
echo "$out"
grep -q "cluster ready: 2 nodes" <<<"$out" || { echo "FAIL: no ready line"; exit 1; }
grep -q "4 generated" <<<"$out" || { echo "FAIL: no answer"; exit 1; }
# The nodes ran on the far side of ssh (the head listened for other hosts), and none is left.
grep -q "listening on 0.0.0.0" "$dir/run/node-0.log" || { echo "FAIL: the head was not started for remote workers"; exit 1; }
sleep 1
if pgrep -f "dsnode .*$dir/run" >/dev/null; then
  pgrep -af "dsnode .*$dir/run"; echo "FAIL: a node process outlived dsrun"; exit 1
fi

# SIGTERM while a request streams: over ssh dsrun must wait for the remote head's drain (its
# drained file) before stopping the workers, so the accepted answer still finishes.
run2="$dir/run2"
port2=$((dsrt_port + 1))
"$build/apps/dsrun/dsrun" --hostfile "$dir/hosts" --ssh "$ssh_cmd" --model "$dir/tiny-llama" --port "$port2" \
  --run-dir "$run2" --threads 1 --node-arg=--ignore-eos > "$dir/dsrun2.out" 2>&1 &
dsrun_pid=$!
for _ in $(seq 600); do [ -f "$run2/ready" ] && break; sleep 0.1; done
[ -f "$run2/ready" ] || { cat "$dir/dsrun2.out"; echo "FAIL: the second cluster was not ready"; exit 1; }
timeout 120 "$build/apps/dsrun/dsrun" ask --connect "dsrt://127.0.0.1:$port2" --secret-file "$run2/cluster.secret" \
  --model "$dir/tiny-llama" --prompt hello --max-tokens 4000 > "$dir/ask.out" 2>&1 &
ask_pid=$!
for _ in $(seq 3000); do [ -s "$dir/ask.out" ] && break; sleep 0.01; done   # the answer streams
kill -TERM "$dsrun_pid"
wait "$ask_pid" || true
wait "$dsrun_pid" || true
grep -q "4000 generated" "$dir/ask.out" || {
  tail -c 400 "$dir/ask.out"; echo; cat "$run2"/node-*.log 2>/dev/null | tail -20
  echo "FAIL: the workers stopped before the head had drained the streaming request"; exit 1; }
sleep 1
if pgrep -f "dsnode .*$run2" >/dev/null; then
  pgrep -af "dsnode .*$run2"; echo "FAIL: a node process outlived dsrun"; exit 1
fi
echo "PASS: dsrun --hostfile answered through 2 nodes started over ssh, and drained before stopping them"
