#!/usr/bin/env bash
# Sky demo (`npm run demo`): installs what is missing (scripts/deps.sh), serves a volume `sky` (a sparse file in a
# temporary data dir) whose stack tags every request (classify) and records the tags (tag-log), attaches it through
# nbdfuse + a direct-I/O loop device, makes an ext4 file system on it, runs a workload on it under tracing
# (`sky agent`: the tracer's insights reach the engine over the hint channel), then prints what Sky learned —
# metadata vs data, the class mix, the patterns it found (copies, encryption) — and how right the tags were against
# the file system's own ground truth, and tears everything down again — also on Ctrl-C or any failure.
# The report (markdown, JSON, SVG plots) is kept in ./demo-report/.
#
# Settings (environment): SKY_DEMO_SIZE (volume size, default 2G), SKY_DEMO_FILES and SKY_DEMO_FILE_MB (the
# large-file workload, default 6 files of 64 MiB), SKY_DEMO_BACKEND (tracer: ebpf (default) or ptrace).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

SIZE=${SKY_DEMO_SIZE:-2G}
FILES=${SKY_DEMO_FILES:-6}
FILE_MB=${SKY_DEMO_FILE_MB:-64}
BACKEND=${SKY_DEMO_BACKEND:-ebpf}
REPORT_DIR=$REPO/demo-report

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\033[31mdemo: %s\033[0m\n' "$*" >&2; exit 1; }

# Nanosecond clock and MB/s (10^6 bytes per second) without bc.
now_ns() { date +%s%N; }
mb_per_s() { awk -v bytes="$1" -v ns="$2" 'BEGIN { printf "%.1f", (ns > 0 ? bytes / ns * 1000 : 0) }'; }
seconds() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }

# True while PID runs (a zombie counts as gone).
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Stops PID: SIGTERM, up to $2 seconds of grace, then SIGKILL.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  echo "    pid $pid ignored SIGTERM for ${grace}s; killing" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# ---- teardown: runs on every exit path (success, failure, Ctrl-C, SIGTERM) --------------------------------------
# State is read back from the system (mountpoint, losetup -j), so an interrupt between two steps leaks nothing.
WORK='' SERVER_PID='' FUSE_PID=''
cleanup() {
  local rc=$? loop
  trap - EXIT INT TERM
  set +e
  step "tearing down"
  if [ -n "$WORK" ] && mountpoint -q "$MNT"; then
    umount "$MNT" 2>/dev/null || { sleep 1; umount "$MNT"; } || umount -l "$MNT"
    info "unmounted $MNT"
  fi
  if [ -n "$FUSE_PID" ]; then
    for loop in $(losetup -n -O NAME -j "$FUSE_DIR/nbd" 2>/dev/null); do losetup -d "$loop" && info "detached $loop"; done
  fi
  if [ -n "$FUSE_PID" ]; then
    # The loop device lets go of the FUSE file asynchronously; retry the unmount briefly before killing nbdfuse.
    for _ in $(seq 50); do fusermount3 -u "$FUSE_DIR" 2>/dev/null && break; sleep 0.1; done
    stop_pid "$FUSE_PID" 5
    mountpoint -q "$FUSE_DIR" 2>/dev/null && fusermount3 -uz "$FUSE_DIR"
    info "nbdfuse (pid $FUSE_PID) stopped"
  fi
  if [ -n "$SERVER_PID" ]; then stop_pid "$SERVER_PID" 10; info "sky serve (pid $SERVER_PID) stopped"; fi
  if [ -n "${GNUPGHOME:-}" ] && [ -S "$(gpgconf --homedir "$GNUPGHOME" --list-dirs agent-socket 2>/dev/null)" ]; then
    gpgconf --homedir "$GNUPGHOME" --kill gpg-agent && info "gpg-agent (started by the workload's gpg) stopped"
    gpgconf --homedir "$GNUPGHOME" --remove-socketdir 2>/dev/null
  fi
  if [ -n "$WORK" ]; then
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ] && [ -s "$WORK/server.log" ]; then
      echo "--- last lines of the server log ---" >&2; tail -n 20 "$WORK/server.log" >&2
    fi
    rm -rf "$WORK" "${SOURCE:-}"
  fi
  [ "$rc" -eq 0 ] && printf '\n\033[32mdemo finished\033[0m\n' || printf '\n\033[31mdemo failed (exit %s)\033[0m\n' "$rc" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- setup ------------------------------------------------------------------------------------------------------
step "installing what is missing (scripts/deps.sh)"
bash scripts/deps.sh
[ "$(id -u)" -eq 0 ] || die "the demo needs root (loop devices, mkfs, mount)"
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || die "/dev/fuse is missing (modprobe fuse)"
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null || die "/dev/loop-control is missing (modprobe loop)"

WORK=$(mktemp -d /tmp/sky-demo.XXXXXX)
DATA_DIR=$WORK/data FUSE_DIR=$WORK/fuse MNT=$WORK/mnt
mkdir -p "$DATA_DIR" "$FUSE_DIR" "$MNT"
# gpg in the workload starts a gpg-agent that outlives it: give it a home of its own, stopped at teardown, and leave
# the user's ~/.gnupg alone.
export GNUPGHOME=$WORK/gnupg
mkdir -m 700 "$GNUPGHOME"
SOCKET=$DATA_DIR/sky.sock
URI="nbd+unix:///sky?socket=$SOCKET"
METRICS_PORT=$(node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
METRICS=127.0.0.1:$METRICS_PORT

# ---- serve ------------------------------------------------------------------------------------------------------
step "starting sky serve: volume 'sky' ($SIZE sparse file) with the classify and tag-log layers"
HINTS=$DATA_DIR/hints.sock
TAGS=$WORK/tags.jsonl
TOKEN=$(node -e 'console.log(require("node:crypto").randomBytes(24).toString("hex"))')
cat >"$WORK/sky.yaml" <<YAML
dataDir: $DATA_DIR
listen: { socket: $SOCKET }
metrics: { listen: "$METRICS" }
hints: { socket: $HINTS }
exports:
  - name: sky
    device: { type: file, path: sky.img, size: $SIZE }
    hintToken: $TOKEN
    layers:
      - { type: classify }
      - { type: tag-log, path: $TAGS }
YAML
# setsid: the server gets its own session, so a Ctrl-C in this terminal reaches only this script, which then
# unmounts before stopping the server (a server stopped first would leave the mount hanging).
setsid node bin/sky serve --config "$WORK/sky.yaml" --log-format pretty >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for i in $(seq 300); do
  alive "$SERVER_PID" || die "sky serve exited during start-up"
  nbdinfo --size "$URI" >/dev/null 2>&1 && break
  [ "$i" -lt 300 ] || die "sky serve not ready after 30 s"
  sleep 0.1
done
info "pid $SERVER_PID, socket $SOCKET, hints $HINTS, metrics http://$METRICS/metrics"
nbdinfo "$URI" | grep -E 'export=|export-size|is_read_only|can_(flush|trim|zero|multi_conn)' | sed 's/^\s*/    /'

# ---- attach -----------------------------------------------------------------------------------------------------
step "attaching: nbdfuse → loop (direct I/O) → ext4"
setsid nbdfuse -P "$WORK/nbdfuse.pid" "$FUSE_DIR" "$URI" >"$WORK/nbdfuse.log" 2>&1 &
FUSE_PID=$!
for i in $(seq 100); do
  alive "$FUSE_PID" || die "nbdfuse exited: $(cat "$WORK/nbdfuse.log")"
  [ -s "$WORK/nbdfuse.pid" ] && [ -e "$FUSE_DIR/nbd" ] && break
  [ "$i" -lt 100 ] || die "nbdfuse not ready after 10 s"
  sleep 0.1
done
info "nbdfuse (pid $FUSE_PID): $FUSE_DIR/nbd"
LOOP=$(losetup --direct-io=on --show -f "$FUSE_DIR/nbd")
info "loop device: $LOOP (direct I/O: $(losetup -n -O DIO "$LOOP" | tr -d ' ' | sed 's/1/on/;s/0/off/'))"
mkfs.ext4 -q -F -L sky-demo "$LOOP"
mount "$LOOP" "$MNT"
info "ext4 mounted on $MNT ($(df -h --output=size "$MNT" | tail -1 | tr -d ' '))"

# ---- workload under tracing ---------------------------------------------------------------------------------------
# `sky agent` traces the command and everything it starts, works out which files live on volume 'sky' (loop →
# nbdfuse → export), and sends the engine their extents, fingerprints of the blocks written, sizes, copies,
# encryption and deletions. The engine tags every block request with what it learnt; the tag-log layer records it.
agent() { node bin/sky agent --engine "unix:$HINTS" --volume sky --token "$TOKEN" --backend "$BACKEND" -- "$@"; }

SOURCE=$(mktemp /dev/shm/sky-demo-source.XXXXXX)
dd if=/dev/urandom of="$SOURCE" bs=1M count="$FILE_MB" status=none
SOURCE_SUM=$(sha256sum "$SOURCE" | cut -d' ' -f1)
export SOURCE MNT FILES FILE_MB REPO

step "traced workload 1: $FILES files of $FILE_MB MiB (fsync each), a source tree (cp -a node_modules), gpg, cp, rm"
start=$(now_ns)
agent bash -euc '
  mkdir "$MNT/data"
  for i in $(seq "$FILES"); do dd if="$SOURCE" of="$MNT/data/file$i" bs=1M conv=fsync status=none; done
  cp -a "$REPO/node_modules" "$MNT/tree"
  gpg --batch --yes --quiet --pinentry-mode loopback --passphrase sky --symmetric --cipher-algo AES256 \
    -o "$MNT/data/file1.gpg" "$MNT/data/file1"
  cp "$MNT/data/file2" "$MNT/data/file2.copy"
  head -c 1M "$SOURCE" >"$MNT/scratch"; sync "$MNT/scratch"; rm "$MNT/scratch"
  sync -f "$MNT"'
info "workload 1 took $(seconds $(($(now_ns) - start))) s"

sync
echo 3 >/proc/sys/vm/drop_caches # so that what follows reads from Sky, not from memory
step "traced workload 2 (cold cache): find over the volume, read the large files back and check them"
start=$(now_ns)
agent bash -euc '
  echo "    find: $(find "$MNT" -type f | wc -l) files"
  for i in $(seq "$FILES"); do
    sum=$(sha256sum "$MNT/data/file$i" | cut -d" " -f1)
    [ "$sum" = "$(sha256sum "$SOURCE" | cut -d" " -f1)" ] || { echo "file$i: checksum mismatch" >&2; exit 1; }
  done
  cmp "$MNT/data/file2" "$MNT/data/file2.copy"
  echo "    $FILES files of $FILE_MB MiB read back: sha256 ok; the copy matches its source"'
info "workload 2 took $(seconds $(($(now_ns) - start))) s"

# ---- what the server saw ------------------------------------------------------------------------------------------
step "server stats (GET http://$METRICS/stats)"
node --input-type=module - "http://$METRICS/stats" <<'EOF' || info "(no stats: the metrics endpoint did not answer)"
const response = await fetch(process.argv[2]);
if (!response.ok) throw new Error(`HTTP ${response.status}`);
const { volumes } = await response.json();
const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);
for (const { volume, ops } of volumes) {
  console.log(`    volume ${volume}`);
  console.log(`    ${'op'.padEnd(12)}${'count'.padStart(10)}${'errors'.padStart(8)}${'MiB'.padStart(10)}${'mean µs'.padStart(10)}`);
  for (const [op, s] of Object.entries(ops)) {
    if (s.count === 0) continue;
    const mean = (s.latencySumUs / s.count).toFixed(1);
    console.log(`    ${op.padEnd(12)}${String(s.count).padStart(10)}${String(s.errors).padStart(8)}${mib(s.bytes).padStart(10)}${mean.padStart(10)}`);
  }
}
EOF

# ---- what Sky learned -------------------------------------------------------------------------------------------
step "ground truth: unmount, mount read-only, map every file and the file system's space (sky truth)"
sync
node bin/sky truth "$MNT" --remount-ro --out "$WORK/truth.json" >"$WORK/truth.txt"
grep -iE '^(files|file bytes|metadata|data|free)' "$WORK/truth.txt" | sed 's/^/    /' || true

step "detaching the volume and stopping the server (the tag log is complete once the engine has closed it)"
umount "$MNT"
for loop in $(losetup -n -O NAME -j "$FUSE_DIR/nbd" 2>/dev/null); do losetup -d "$loop"; done
for _ in $(seq 50); do fusermount3 -u "$FUSE_DIR" 2>/dev/null && break; sleep 0.1; done
stop_pid "$FUSE_PID" 5
stop_pid "$SERVER_PID" 10
info "tag log: $(wc -l <"$TAGS") lines, $(du -h "$TAGS" | cut -f1)"

step "what Sky learned (sky report; plots and tables in ./demo-report/)"
rm -rf "$REPORT_DIR"
node bin/sky report "$TAGS" --truth "$WORK/truth.json" --out "$REPORT_DIR" --brief 2>/dev/null | sed 's/^/    /'
info "report: $REPORT_DIR/report.md ($(ls "$REPORT_DIR"/*.svg 2>/dev/null | wc -l) SVG plots)"
