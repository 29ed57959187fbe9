/**
 * Pattern detectors that run when a process has finished writing a file (its description released, or the
 * process gone): copies and encryption. Both read the written file back, because a name or a byte count is a
 * reason to look, not proof.
 */
import assert from 'node:assert/strict';
import { basename, extname } from 'node:path';
import { BLOCK_BYTES, entropyBitsPerByte, fingerprint, readSample, sameBlocks, unarmor, type BlockReader } from './content.js';
import { HEAD_BYTES, noteLook, sameIdentity, trustedFirstBlock, type FileRecord } from './files.js';
import type { FileStat } from './inspector.js';
import { COPY_SOURCES_RECENT, forgetIo, type FileIo, type Process } from './process.js';
import type { EngineState, FileView } from './state.js';

/** Executables whose written files are ciphertext when their entropy says so. */
export const ENCRYPTING_EXES: ReadonlySet<string> = new Set([
  'gpg', 'gpg2', 'gpg-zip', 'sq', 'age', 'rage', 'ccrypt', 'ccencrypt', 'scrypt', 'aescrypt', 'mcrypt', 'bcrypt',
]);
/** openssl encrypts only in some subcommands: `enc`, `smime -encrypt`, `cms -encrypt`, or a bare cipher name. */
const OPENSSL_ENCRYPTING = /^(enc|aes|des|bf|camellia|cast|chacha|rc[245]|seed|sm4|aria)/;
export const ENCRYPTED_EXTENSIONS: ReadonlySet<string> = new Set(['.gpg', '.pgp', '.asc', '.enc', '.age', '.aes', '.cpt']);
export const ENTROPY_THRESHOLD_BITS = 7.9;
/** Below this the entropy estimate is too noisy to confirm anything (gpg's 600-byte random_seed, say). */
export const ENTROPY_SAMPLE_MIN_BYTES = 1024;
/** Smallest read/write copy reported: one whole 4 KiB block. */
export const READ_WRITE_COPY_BYTES_MIN = 4096;
/** Armoured files are sampled as one contiguous prefix, since base64 lines must be decoded in order. */
const ARMOR_PREFIX_BYTES = 256 * 1024;
const COPY_CANDIDATES_MAX = 3;

/** ReleaseHooks.onWritesFinished. `final`: the process is gone, so no later event can bring a copy's source. */
export function writesFinished(state: EngineState, process: Process, file: FileRecord, ts: number, final: boolean): void {
  const io = process.io.get(file);
  if (!io) return;
  reportExplicitCopies(state, process, file, io, ts);
  const firstLook = !io.recheck;
  if (io.writeBytes > 0) {
    const found = detectReadWriteCopy(state, process, file, io, ts);
    // ccrypt encrypts in place and renames the file at once: the first look may find neither fd nor name.
    if (firstLook || io.encryptionUnseen) io.encryptionUnseen = !detectEncryption(state, process, file, ts);
    io.recheck = !found && !final;
  }
  if (!io.recheck) {
    io.writeBytes = 0;
    io.wroteAtStart = false;
  }
  if (io.readBytes === 0 && io.writeBytes === 0) forgetIo(process, file);
}

function reportExplicitCopies(state: EngineState, process: Process, target: FileRecord, io: FileIo, ts: number): void {
  for (const copy of io.copiesIn.values()) {
    state.emit({
      kind: 'copy_detected',
      ts,
      pid: process.pid,
      srcPath: copy.source.path,
      dstPath: target.path,
      bytes: copy.bytes,
      method: copy.method,
      exe: process.exe,
      verified: true, // the kernel moved the bytes itself
      ...state.uncertainty(copy.source, target),
    });
  }
  io.copiesIn.clear();
}

/**
 * Sources worth comparing: of the files this process read last (readIo), those it read about as many bytes of as
 * it wrote (half to twice: a copy reads what it writes; tar -x reading a 1 GiB archive is not copying each 10 KiB
 * file out of it), the COPY_CANDIDATES_MAX closest in size, most recently read first among equals.
 */
function copyCandidates(process: Process, target: FileRecord, written: number, ruledOut: ReadonlySet<FileRecord> | null): FileRecord[] {
  const ioOf = (file: FileRecord) => {
    const io = process.io.get(file);
    assert.ok(io !== undefined, 'readIo holds only files of process.io (both are changed through forgetIo)');
    return io;
  };
  return closestReads(process.readIo, ioOf, target, written, ruledOut);
}

/**
 * When the writer read nothing like it, the files other traced processes read last: rsync's receiver writes what
 * its sender read, `tar c | tar x` and `cat a | cat > b` likewise. Content decides, as for the writer's own reads.
 */
function otherReadersCandidates(state: EngineState, process: Process, target: FileRecord, written: number, ruledOut: ReadonlySet<FileRecord> | null): FileRecord[] {
  const files: FileRecord[] = [];
  for (const [file, reader] of state.recentReads) if (reader !== process) files.push(file); // gone readers too: `tar c` exits first
  return closestReads(files, (file) => state.recentReads.get(file)?.io.get(file), target, written, ruledOut);
}

/** Up to COPY_CANDIDATES_MAX of `files` whose read bytes are closest to `written` (within a factor of 2). */
function closestReads(
  files: Iterable<FileRecord>,
  ioOf: (file: FileRecord) => FileIo | undefined,
  target: FileRecord,
  written: number,
  ruledOut: ReadonlySet<FileRecord> | null,
): FileRecord[] {
  const chosen: FileRecord[] = [];
  const distances: number[] = [];
  for (const file of files) {
    const io = ioOf(file);
    if (io === undefined) continue;
    if (file === target || file.metadata || io.readBytes * 2 < written || io.readBytes > written * 2 || ruledOut?.has(file)) continue;
    const distance = Math.abs(io.readBytes - written);
    // Insertion into a list of at most COPY_CANDIDATES_MAX; `<=` puts a later (more recent) read before an equal one.
    let at = chosen.length;
    while (at > 0 && distance <= distances[at - 1]!) at--;
    if (at >= COPY_CANDIDATES_MAX) continue;
    chosen.splice(at, 0, file);
    distances.splice(at, 0, distance);
    if (chosen.length > COPY_CANDIDATES_MAX) {
      chosen.pop();
      distances.pop();
    }
  }
  return chosen;
}

function detectReadWriteCopy(state: EngineState, process: Process, target: FileRecord, io: FileIo, ts: number): boolean {
  const written = io.writeBytes;
  // Below one whole block a "copy" means nothing to the block layer, and small files repeat by chance (gpg
  // writes its lock file with the same pid line it just read from another): only block-sized copies count.
  if (written < READ_WRITE_COPY_BYTES_MIN || !io.wroteAtStart) return false;
  let read = copyCandidates(process, target, written, io.ruledOut);
  if (read.length === 0) read = otherReadersCandidates(state, process, target, written, io.ruledOut);
  const candidates = ruleOutByHead(io, target, read);
  if (candidates.length === 0) return false;
  // The target is always read (its first block at least): opened at once, fstat through it is its stat.
  const targetSeen = state.openOf(target);
  if (!targetSeen) {
    state.counters.unverifiedCopies++;
    return false;
  }
  try {
    for (const source of candidates) {
      const verdict = compareCopy(state, source, target, targetSeen, written);
      if (verdict === 'different') ruleOut(io, source);
      if (typeof verdict === 'number') {
        state.emit({
          kind: 'copy_detected',
          ts,
          pid: process.pid,
          srcPath: source.path,
          dstPath: target.path,
          bytes: verdict,
          method: 'read-write',
          exe: process.exe,
          verified: true,
          ...state.uncertainty(source, target),
        });
        return true;
      }
    }
    return false;
  } finally {
    targetSeen.close();
  }
}

/**
 * Whether `target` holds a copy of `source` over the bytes the process wrote, read back: the bytes compared when it
 * does, 'different' when a block differs, 'unknown' when it cannot tell (a file vanished, shrank or is too short).
 */
function compareCopy(state: EngineState, source: FileRecord, target: FileRecord, targetSeen: FileView, written: number): number | 'different' | 'unknown' {
  // A first block cached since the last look at an unchanged source rules most candidates out without a stat.
  const trusted = trustedFirstBlock(source);
  if (trusted) {
    const targetFirst = firstBlockPrint(target, targetSeen);
    if (targetFirst && !trusted.print.equals(targetFirst)) return 'different';
  }
  const sourceSeen = state.statOf(source);
  if (!sourceSeen) return 'unknown';
  try {
    // The source's name leads to the target itself now: an in-place edit (sed -i, perl -pi) renamed what it wrote
    // over the file it read before we looked. A file is no copy of itself, and what the source held is gone.
    if (sameIdentity(sourceSeen.stat, targetSeen.stat)) return 'unknown';
    noteLook(source, sourceSeen.stat);
    const length = Math.min(written, sourceSeen.stat.size, targetSeen.stat.size);
    if (length * 2 < written) return 'unknown';
    const sourceFirst = firstBlockPrint(source, sourceSeen);
    const targetFirst = sourceFirst && firstBlockPrint(target, targetSeen);
    if (sourceFirst && targetFirst && !sourceFirst.equals(targetFirst)) return 'different';
    const same = sameBlocks(sourceSeen.read, targetSeen.read, length);
    return same === true ? length : same === false ? 'different' : 'unknown';
  } finally {
    sourceSeen.close();
  }
}

/**
 * Candidates whose first bytes, known without a system call, differ from what the process wrote at the start of
 * the target are ruled out: a mail server writing new mails compares each with the mails it read last, and most
 * differ from the first bytes on. Known means the tracer saw them written (writtenHead), for the target and for a
 * source a traced process wrote, or a trusted cached first block of the source.
 */
function ruleOutByHead(io: FileIo, target: FileRecord, candidates: FileRecord[]): FileRecord[] {
  const head = target.writtenHead;
  if (head === null) return candidates;
  return candidates.filter((source) => {
    const sourceHead = trustedFirstBlock(source)?.head ?? source.writtenHead;
    if (sourceHead === null || sourceHead === head) return true;
    ruleOut(io, source);
    return false;
  });
}

/**
 * Fingerprint of the file's first block, cached on the record while its size and mtime stay as stat saw them (a
 * mail server's files are read again and again between writes); null when it cannot be read.
 */
function firstBlockPrint(file: FileRecord, seen: { stat: FileStat; read: BlockReader }): Buffer | null {
  const size = seen.stat.size;
  const mtimeUs = Math.floor(seen.stat.mtimeNs / 1000);
  const cached = file.firstBlock;
  if (cached && cached.size === size && cached.mtimeUs === mtimeUs) return cached.print;
  const length = Math.min(BLOCK_BYTES, size);
  const block = length > 0 ? seen.read(0, length) : null;
  if (!block || block.length !== length) return null;
  file.firstBlock = { size, mtimeUs, length, print: fingerprint(block), head: length >= HEAD_BYTES ? block.readUInt32LE(0) : null, rekey: false };
  return file.firstBlock.print;
}

/** Bounded like the candidates it remembers (COPY_SOURCES_RECENT): past that, start over. */
function ruleOut(io: FileIo, source: FileRecord): void {
  io.ruledOut ??= new Set();
  if (io.ruledOut.size >= COPY_SOURCES_RECENT) io.ruledOut.clear();
  io.ruledOut.add(source);
}

export function encryptionEvidence(process: Pick<Process, 'exe' | 'argv' | 'comm'>, path: string): string[] {
  const evidence: string[] = [];
  const names = new Set([process.exe, process.argv?.[0], process.comm].filter((n): n is string => !!n).map((n) => basename(n)));
  for (const name of names) {
    if (ENCRYPTING_EXES.has(name)) evidence.push(`exe:${name}`);
  }
  if (names.has('openssl') && opensslEncrypts(process.argv ?? [])) evidence.push('exe:openssl enc');
  const extension = extname(path).toLowerCase();
  if (ENCRYPTED_EXTENSIONS.has(extension)) evidence.push(`extension:${extension}`);
  return [...new Set(evidence)];
}

function opensslEncrypts(argv: string[]): boolean {
  const subcommand = argv[1] ?? '';
  return OPENSSL_ENCRYPTING.test(subcommand) || argv.includes('-encrypt');
}

/** Whether the file was looked at (false: it could not be read back, so a later look may still decide). */
function detectEncryption(state: EngineState, process: Process, file: FileRecord, ts: number): boolean {
  const evidence = encryptionEvidence(process, file.path);
  if (evidence.length === 0) return true;
  const entropy = sampledEntropy(state, file);
  if (entropy === 'unreadable') return false;
  if (entropy === 'inconclusive' || entropy <= ENTROPY_THRESHOLD_BITS) return true;
  state.emit({
    kind: 'encryption_detected',
    ts,
    pid: process.pid,
    path: file.path,
    exe: process.exe,
    evidence: [...evidence, `entropy:${entropy.toFixed(3)}`],
    entropy,
    ...state.uncertainty(file),
  });
  return true;
}

/**
 * Compressed and media formats: dense, so their entropy can pass for ciphertext (xz's does), but a file that starts
 * with one of these magic numbers is that format, whatever its name says (`xz -c f > f.enc`). Offsets and bytes.
 */
const PLAIN_FORMAT_MAGICS: ReadonlyArray<readonly [number, readonly number[]]> = [
  [0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]], // xz
  [0, [0x1f, 0x8b]], // gzip
  [0, [0x42, 0x5a, 0x68]], // bzip2
  [0, [0x28, 0xb5, 0x2f, 0xfd]], // zstd
  [0, [0x04, 0x22, 0x4d, 0x18]], // lz4
  [0, [0x4c, 0x5a, 0x49, 0x50]], // lzip
  [0, [0x5d, 0x00, 0x00]], // lzma (alone)
  [0, [0x50, 0x4b, 0x03, 0x04]], // zip
  [0, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]], // 7z
  [0, [0x52, 0x61, 0x72, 0x21, 0x1a, 0x07]], // rar
  [0, [0xff, 0xd8, 0xff]], // jpeg
  [0, [0x89, 0x50, 0x4e, 0x47]], // png
  [4, [0x66, 0x74, 0x79, 0x70]], // mp4, mov, heic ("ftyp")
  [0, [0x1a, 0x45, 0xdf, 0xa3]], // matroska, webm
  [0, [0x4f, 0x67, 0x67, 0x53]], // ogg
];

function plainFormat(head: Buffer): boolean {
  return PLAIN_FORMAT_MAGICS.some(([at, magic]) => head.length >= at + magic.length && magic.every((byte, i) => head[at + i] === byte));
}

/**
 * Bits per byte of a sample of the file; 'unreadable' when it could not be opened (renamed or removed since, with
 * its fd closed), 'inconclusive' when too small to tell or in a known plain format.
 */
function sampledEntropy(state: EngineState, file: FileRecord): number | 'unreadable' | 'inconclusive' {
  const seen = state.openOf(file);
  if (!seen) return 'unreadable';
  try {
    if (seen.stat.size < ENTROPY_SAMPLE_MIN_BYTES) return 'inconclusive';
    const head = seen.read(0, Math.min(BLOCK_BYTES, seen.stat.size));
    if (!head) return 'unreadable';
    if (plainFormat(head)) return 'inconclusive';
    const armored = unarmor(head) !== head;
    const sample = armored
      ? unarmor(seen.read(0, Math.min(ARMOR_PREFIX_BYTES, seen.stat.size)) ?? head)
      : readSample(seen.read, seen.stat.size);
    if (!sample || sample.length < ENTROPY_SAMPLE_MIN_BYTES * (armored ? 0.75 : 1)) return 'inconclusive';
    return entropyBitsPerByte(sample);
  } finally {
    seen.close();
  }
}
