/**
 * What the insight engine tells the storage engine (and `sky trace --json` tells a user), one JSON object per
 * insight. Like SyscallEvent this is a wire shape: add optional fields freely, never change an existing meaning.
 *
 * `uncertain` is set whenever the insight rests on state the engine could not confirm (events were lost, the
 * process was gone before /proc could be read, a path was relative to an unknown directory). Consumers may use an
 * uncertain insight as a hint but must not treat it as fact.
 */
import type { IoClass } from './ioclass.js';

export const INSIGHT_VERSION = 1;

interface InsightBase {
  /** Timestamp of the syscall event that produced the insight (CLOCK_MONOTONIC ns). */
  ts: number;
  /** Process (thread-group id) the insight is about; null for run-wide insights. */
  pid: number | null;
  uncertain?: string;
}

/** A file as storage knows it: dev/ino identify it across renames and hard links; path is the latest known. */
export interface FileRef {
  path: string;
  dev: number | null;
  ino: number | null;
}

export interface ByteRange {
  offset: number;
  length: number;
}

export type CopyMethod = 'copy_file_range' | 'sendfile' | 'splice' | 'FICLONE' | 'FICLONERANGE' | 'read-write';
export type HintSource = 'syscall-args' | 'fadvise' | 'rw_hint' | 'ioprio';
/** 'tmpfile': an O_TMPFILE file closed without ever being given a name (linkat): its blocks die at that close. */
/** `hole`: fallocate punched a hole in the file or collapsed a range out of it (the file lives on, smaller or sparser). */
export type LifetimeCause = 'unlink' | 'rename-over' | 'truncate' | 'hole' | 'tmpfile';
export type SizeChangeCause = 'write' | 'truncate' | 'ftruncate' | 'fallocate' | 'copy' | 'open-truncate' | 'observed';
export type CloseCause = 'close' | 'exit' | 'exec' | 'replaced';
export type WritebackTrigger = 'msync' | 'munmap' | 'fsync' | 'exit' | 'exec';

export type FileOpenedInsight = InsightBase &
  FileRef & {
    kind: 'file_opened';
    fd: number;
    /** Open flags as the kernel saw them. */
    flags: number;
    size: number | null;
    ioClass: IoClass;
    metadata: boolean;
    exe: string | null;
    /** The fd predates what we saw (inherited or opened before tracing began); learnt from /proc. */
    discovered: boolean;
  };

export type FileClosedInsight = InsightBase &
  FileRef & {
    kind: 'file_closed';
    /** The last fd that referred to the open file description. */
    fd: number;
    size: number | null;
    ioClass: IoClass;
    metadata: boolean;
    /** Bytes moved through this open file description while it was open. */
    readBytes: number;
    writeBytes: number;
    /** File position when the description was released, when known. */
    position: number | null;
    cause: CloseCause;
  };

export type FileSizeChangedInsight = InsightBase &
  FileRef & {
    kind: 'file_size_changed';
    oldSize: number | null;
    size: number;
    ioClass: IoClass;
    cause: SizeChangeCause;
  };

export type CopyDetectedInsight = InsightBase & {
  kind: 'copy_detected';
  srcPath: string;
  dstPath: string;
  bytes: number;
  method: CopyMethod;
  exe: string | null;
  /** read-write copies are only reported after sampled fingerprints of both files matched. */
  verified: boolean;
};

export type EncryptionDetectedInsight = InsightBase & {
  kind: 'encryption_detected';
  path: string;
  exe: string | null;
  /** Why we looked, e.g. "exe:gpg", "extension:.gpg", and the confirmation "entropy:7.998". */
  evidence: string[];
  entropy: number;
};

export type LifetimeEndedInsight = InsightBase &
  FileRef & {
    kind: 'lifetime_ended';
    /** Bytes whose life ended; null when the file's size was never known. */
    bytes: number | null;
    /** How long those bytes lived; null when their birth was not seen and the file has no usable mtime. */
    livedMs: number | null;
    bornFrom: 'created' | 'first-write' | 'mtime' | null;
    cause: LifetimeCause;
  };

/**
 * A file (or directory) is known by another name: rename, renameat, renameat2 (an exchange reports both), or the
 * first name an O_TMPFILE file gets from linkat. Later insights use `path`; a file replaced by the rename gets a
 * lifetime_ended (rename-over).
 */
export type FileRenamedInsight = InsightBase &
  FileRef & {
    kind: 'file_renamed';
    /** The name it had. */
    from: string;
    metadata: boolean;
  };

export type AppHintInsight = InsightBase & {
  kind: 'app_hint';
  /** null for process-wide hints (ioprio_set). */
  path: string | null;
  fd: number | null;
  ioClass: IoClass;
  source: HintSource;
  /** The hint as the application gave it (advice, write-life value, ioprio value, or the syscall's class). */
  raw: number;
  /** The bytes the hint covers, when it covers a range. */
  range?: ByteRange;
};

export type MmapWritebackInsight = InsightBase &
  FileRef & {
    kind: 'mmap_writeback';
    range: ByteRange;
    trigger: WritebackTrigger;
  };

/**
 * Bytes a traced process put into a file (write, pwrite, writev…, or an explicit copy into it), as a range of file
 * offsets. Opt-in (InsightEngineOptions.reportWrites): the agent reads these ranges back to fingerprint the blocks
 * before the file system writes them. Aggregated writes (rw_summary) report the span from the lowest to the
 * highest offset written since the previous summary, so the range may include bytes that were not rewritten.
 */
export type DataWrittenInsight = InsightBase &
  FileRef & {
    kind: 'data_written';
    fd: number;
    range: ByteRange;
    /** How the bytes got there: 'write' for write-family calls, else the copy call. */
    via: 'write' | Exclude<CopyMethod, 'read-write'>;
  };

/** fsync/fdatasync returned: the file's dirty data is on the device now (opt-in with reportWrites). */
export type FileSyncedInsight = InsightBase &
  FileRef & {
    kind: 'file_synced';
    fd: number;
    dataOnly: boolean;
  };

export type UncertaintyInsight = InsightBase & {
  kind: 'uncertainty';
  reason: string;
  lostEvents: number;
};

export type Insight =
  | FileOpenedInsight
  | FileClosedInsight
  | FileSizeChangedInsight
  | CopyDetectedInsight
  | EncryptionDetectedInsight
  | LifetimeEndedInsight
  | FileRenamedInsight
  | AppHintInsight
  | MmapWritebackInsight
  | DataWrittenInsight
  | FileSyncedInsight
  | UncertaintyInsight;

export type InsightKind = Insight['kind'];
