import { describe, expect, it } from 'vitest';
import { parseNbdUri, parseNbdfuseArgs, nbdfuseCandidates } from '../../../src/insight/extents/nbdfuse.js';
import { parseMountInfo, mountOf, isFuseMount } from '../../../src/insight/extents/mountinfo.js';

describe('parseNbdUri', () => {
  it('reads unix-socket URIs, escaped export names included', () => {
    expect(parseNbdUri('nbd+unix:///disk?socket=/run/sky.sock')).toEqual({
      mode: 'uri',
      uri: 'nbd+unix:///disk?socket=/run/sky.sock',
      socket: '/run/sky.sock',
      exportName: 'disk',
      tls: false,
    });
    expect(parseNbdUri('nbds+unix:///my%20disk?socket=/s')).toMatchObject({ exportName: 'my disk', tls: true, socket: '/s' });
    expect(parseNbdUri('nbd+unix:///disk')).toBeNull();
  });

  it('reads TCP URIs with and without a port', () => {
    expect(parseNbdUri('nbd://example.com/vol')).toMatchObject({ host: 'example.com', port: 10809, exportName: 'vol', tls: false });
    expect(parseNbdUri('nbds://10.0.0.1:10810/')).toMatchObject({ host: '10.0.0.1', port: 10810, exportName: '', tls: true });
    expect(parseNbdUri('http://example.com/')).toBeNull();
  });
});

describe('parseNbdfuseArgs', () => {
  it('skips options with and without values', () => {
    expect(parseNbdfuseArgs(['-P', 'pid', '-C', '1', '-o', 'allow_other', 'dir/nbd', 'nbd+unix:///d?socket=s'])).toMatchObject({
      target: 'dir/nbd',
      readOnly: false,
      server: { socket: 's', exportName: 'd' },
    });
    expect(parseNbdfuseArgs(['-rs', '--pidfile', 'p', '-C4', 'mnt', 'nbd://h/x'])).toMatchObject({ target: 'mnt', readOnly: true, server: { host: 'h' } });
    expect(parseNbdfuseArgs(['--readonly', '--connections', '2', 'mnt', 'nbd://h/x'])!.readOnly).toBe(true);
  });

  it('reads the other modes', () => {
    expect(parseNbdfuseArgs(['mnt', '--unix', '/run/s'])!.server).toMatchObject({ mode: 'unix', socket: '/run/s', exportName: '' });
    expect(parseNbdfuseArgs(['mnt', '--tcp', 'h', '10809'])!.server).toMatchObject({ mode: 'tcp', host: 'h', port: 10809 });
    expect(parseNbdfuseArgs(['mnt', '[', 'nbdkit', 'memory', '1G', ']'])!.server.mode).toBe('socket-activation');
    expect(parseNbdfuseArgs(['mnt', '--command', 'nbdkit', '-s'])!.server.mode).toBe('command');
    expect(parseNbdfuseArgs(['--help'])).toBeNull();
    expect(parseNbdfuseArgs(['mnt'])).toBeNull();
  });

  it('knows the three places a target can put its file', () => {
    expect(nbdfuseCandidates('/a/b')).toEqual([
      { mountPoint: '/a/b', file: '/a/b/nbd' },
      { mountPoint: '/a/b', file: '/a/b' },
      { mountPoint: '/a', file: '/a/b' },
    ]);
  });
});

describe('parseMountInfo', () => {
  const TEXT = [
    '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
    '36 35 98:0 /mnt1 /mnt/par\\040ent rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue',
    '600 27 0:39 / /tmp/t/fuse rw,nosuid - fuse /dev/fuse rw,user_id=0',
    '601 27 0:40 / /tmp/t/fuse2 rw - fuse.nbdfuse nbdfuse rw',
    'garbage line',
  ].join('\n');

  it('parses fields, optional fields and octal escapes', () => {
    const entries = parseMountInfo(TEXT);
    expect(entries).toHaveLength(4);
    expect(entries[1]).toMatchObject({ id: 36, parentId: 35, dev: { major: 98, minor: 0 }, root: '/mnt1', mountPoint: '/mnt/par ent', fsType: 'ext3', source: '/dev/root' });
    expect(entries.filter(isFuseMount).map((entry) => entry.mountPoint)).toEqual(['/tmp/t/fuse', '/tmp/t/fuse2']);
  });

  it('finds the mount of a path by longest prefix, optionally by device', () => {
    const entries = parseMountInfo(TEXT);
    expect(mountOf(entries, '/tmp/t/fuse/nbd')!.mountPoint).toBe('/tmp/t/fuse');
    expect(mountOf(entries, '/tmp/t/fuse2x')!.mountPoint).toBe('/');
    expect(mountOf(entries, '/tmp/t/fuse/nbd', { major: 254, minor: 0 })!.mountPoint).toBe('/');
  });
});
