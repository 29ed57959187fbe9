/**
 * From a FUSE mount to the NBD export behind it: find the nbdfuse process serving the mount (its command line names
 * the mount point and the server), and parse the server into socket and export name.
 *
 * nbdfuse [-C N] [-d] [-o OPT] [-P PIDFILE] [-r] [-s] [-v] MOUNTPOINT[/FILENAME] URI
 *         … MOUNTPOINT[/FILENAME] --unix SOCKET | --tcp HOST PORT | --fd N | --vsock CID PORT | --command CMD… | [ CMD … ]
 * The first argument names either a directory (the file is DIR/nbd), an existing regular file (a "naked" mount
 * over it), or DIR/FILENAME. Relative paths are relative to nbdfuse's working directory.
 */
import path from 'node:path';
import type { HostView } from './host.js';
import type { MountEntry } from './mountinfo.js';

export interface NbdServerAddress {
  /** The NBD URI when there is one (URI mode; built for --unix and --tcp). */
  uri?: string;
  socket?: string;
  host?: string;
  port?: number;
  exportName?: string;
  tls?: boolean;
  /** How nbdfuse reaches the server. */
  mode: 'uri' | 'unix' | 'tcp' | 'vsock' | 'fd' | 'command' | 'socket-activation';
}

export interface NbdfuseArgs {
  /** MOUNTPOINT[/FILENAME] as given. */
  target: string;
  readOnly: boolean;
  server: NbdServerAddress;
}

export interface NbdfuseProcess extends NbdfuseArgs {
  pid: number;
  cwd: string;
}

const LONG_OPTIONS_WITH_VALUE = new Set(['--connections', '--pidfile', '--debug-flags']);
const SHORT_OPTIONS_WITH_VALUE = 'CoPD';

/** Parses nbdfuse's argv (without argv[0]); null when it is not a mount command (e.g. --help). */
export function parseNbdfuseArgs(args: readonly string[]): NbdfuseArgs | null {
  let index = 0;
  let readOnly = false;
  for (; index < args.length; index++) {
    const arg = args[index]!;
    if (arg === '--') {
      index++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-' || arg === '--unix' || arg === '--tcp') break;
    if (arg.startsWith('--')) {
      if (arg === '--readonly') readOnly = true;
      if (LONG_OPTIONS_WITH_VALUE.has(arg)) index++;
      continue;
    }
    const short = shortCluster(arg);
    readOnly ||= short.readOnly;
    if (short.takesNext) index++;
  }
  const target = args[index];
  if (target === undefined) return null;
  const server = parseServerArgs(args.slice(index + 1));
  return server === null ? null : { target, readOnly, server };
}

/** A cluster of short options such as -rs or -C4 or -P FILE: getopt rules, a value option ends the cluster. */
function shortCluster(arg: string): { readOnly: boolean; takesNext: boolean } {
  let readOnly = false;
  for (let at = 1; at < arg.length; at++) {
    const letter = arg[at]!;
    if (letter === 'r') readOnly = true;
    if (SHORT_OPTIONS_WITH_VALUE.includes(letter)) return { readOnly, takesNext: at === arg.length - 1 };
  }
  return { readOnly, takesNext: false };
}

function parseServerArgs(rest: readonly string[]): NbdServerAddress | null {
  const first = rest[0];
  if (first === undefined) return null;
  if (first === '--unix' && rest[1] !== undefined) return { mode: 'unix', socket: rest[1], exportName: '', uri: `nbd+unix:///?socket=${rest[1]}` };
  if (first === '--tcp' && rest[1] !== undefined && rest[2] !== undefined) {
    return { mode: 'tcp', host: rest[1], port: Number(rest[2]), exportName: '', uri: `nbd://${rest[1]}:${rest[2]}/` };
  }
  if (first === '--vsock') return { mode: 'vsock' };
  if (first === '--fd') return { mode: 'fd' };
  if (first === '--command') return { mode: 'command' };
  if (first === '--socket-activation' || first === '[') return { mode: 'socket-activation' };
  return parseNbdUri(first);
}

/** Parses an NBD URI (nbd, nbds, nbd+unix, nbds+unix, nbd+vsock); null for anything else. */
export function parseNbdUri(uri: string): NbdServerAddress | null {
  const match = /^(nbds?)(\+unix|\+vsock)?:\/\//.exec(uri);
  if (!match) return null;
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return null;
  }
  const tls = match[1] === 'nbds';
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (match[2] === '+unix') {
    const socket = url.searchParams.get('socket');
    if (socket === null) return null;
    return { mode: 'uri', uri, socket, exportName, tls };
  }
  if (match[2] === '+vsock') return { mode: 'vsock', uri, exportName, tls };
  const port = url.port === '' ? 10809 : Number(url.port);
  return { mode: 'uri', uri, host: url.hostname, port, exportName, tls };
}

/** The places an nbdfuse target can put its file: [mount point, file inside it]. */
export function nbdfuseCandidates(resolvedTarget: string): Array<{ mountPoint: string; file: string }> {
  return [
    { mountPoint: resolvedTarget, file: path.join(resolvedTarget, 'nbd') },
    { mountPoint: resolvedTarget, file: resolvedTarget },
    { mountPoint: path.dirname(resolvedTarget), file: resolvedTarget },
  ];
}

/** Every running nbdfuse, with its arguments and working directory. */
export function nbdfuseProcesses(host: HostView): NbdfuseProcess[] {
  const found: NbdfuseProcess[] = [];
  for (const name of host.listDir('/proc') ?? []) {
    if (!/^\d+$/.test(name)) continue;
    const argv = (host.readText(`/proc/${name}/cmdline`) ?? '').split('\0');
    if (argv[argv.length - 1] === '') argv.pop();
    if (argv.length === 0 || path.basename(argv[0]!) !== 'nbdfuse') continue;
    const parsed = parseNbdfuseArgs(argv.slice(1));
    const cwd = host.readlink(`/proc/${name}/cwd`);
    if (parsed === null || cwd === null) continue;
    found.push({ ...parsed, pid: Number(name), cwd });
  }
  return found;
}

/**
 * The nbdfuse process that serves `mount` with `file` as its virtual file. A relative socket path in its URI is
 * made absolute against nbdfuse's working directory.
 */
export function nbdfuseServing(host: HostView, mount: MountEntry, file: string): NbdfuseProcess | null {
  for (const candidate of nbdfuseProcesses(host)) {
    const target = path.resolve(candidate.cwd, candidate.target);
    const fits = nbdfuseCandidates(target).some((place) => place.mountPoint === mount.mountPoint && place.file === file);
    if (!fits) continue;
    const server = { ...candidate.server };
    if (server.socket !== undefined) server.socket = path.resolve(candidate.cwd, server.socket);
    return { ...candidate, server };
  }
  return null;
}
