import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HINT_MAGIC, ipread, ipwrite, iread, iwrite } from '../../../src/hints/sdk/index.js';

const HEADER = path.resolve('src/hints/sdk/sky_hints.h');

/** Without a tracer the hinted calls must be exactly the plain calls (the kernel ignores extra arguments). */
describe('hint SDK without a tracer', () => {
  let dir = '';
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sky-sdk-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('iwrite/iread move the position; ipwrite/ipread do not', () => {
    const file = path.join(dir, 'node.bin');
    const fd = fs.openSync(file, 'w+');
    try {
      expect(iwrite(fd, Buffer.from('hello '), 4)).toBe(6);
      expect(iwrite(fd, Buffer.from('world'), 4)).toBe(5);
      expect(ipwrite(fd, Buffer.from('HELLO'), 0, 5)).toBe(5);
      const at = Buffer.alloc(5);
      expect(ipread(fd, at, 6, 1)).toBe(5);
      expect(at.toString()).toBe('world');
      expect(iread(fd, Buffer.alloc(4), 2)).toBe(0); // position is at the end: ipwrite/ipread did not move it
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('HELLO world');
  });

  it('writes from a view at its own offset', () => {
    const file = path.join(dir, 'view.bin');
    const fd = fs.openSync(file, 'w');
    try {
      expect(iwrite(fd, Buffer.from('skip-keep').subarray(5), 0)).toBe(4);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('keep');
  });

  it('reports errors like fs does', () => {
    expect(() => iwrite(987654, Buffer.from('x'), 1)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'write' }));
    expect(() => iwrite(1, Buffer.from('x'), -1)).toThrow(/ioClass/);
  });

  it('the C header carries the same magic and compiles to working calls', () => {
    const header = fs.readFileSync(HEADER, 'utf8');
    const magic = /#define SKY_HINT_MAGIC (0x[0-9a-fA-F]+)L/.exec(header)?.[1];
    expect(Number(magic)).toBe(HINT_MAGIC);
    const source = path.join(dir, 'c.c');
    fs.writeFileSync(
      source,
      `#include "sky_hints.h"
#include <fcntl.h>
#include <string.h>
int main(int argc, char **argv) {
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
  char buf[8] = {0};
  if (iwrite(fd, "abcdef", 6, SKY_CLASS_LT_1M) != 6) return 1;
  if (ipwrite(fd, "XY", 2, 1, SKY_CLASS_METADATA) != 2) return 2;
  if (ipread(fd, buf, 3, 0, 0) != 3 || memcmp(buf, "aXY", 3) != 0) return 3;
  if (lseek(fd, 4, SEEK_SET) != 4 || iread(fd, buf, 8, 2) != 2) return 4;
  return close(fd);
}
`,
    );
    const binary = path.join(dir, 'c');
    execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-I', path.dirname(HEADER), '-o', binary, source]);
    execFileSync(binary, [path.join(dir, 'c.out')]);
    expect(fs.readFileSync(path.join(dir, 'c.out'), 'utf8')).toBe('aXYdef');
  });
});
