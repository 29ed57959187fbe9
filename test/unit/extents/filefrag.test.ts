import { describe, expect, it } from 'vitest';
import { parseFilefrag } from '../../../src/insight/extents/filefrag.js';
import { ExtentFlag } from '../../../src/insight/extents/extent.js';

// Real output of `filefrag -v -b1` on ext4 (this machine), with an `expected` column on the second extent.
const EXT4_BYTES = `Filesystem type is: ef53
File size of mnt/a is 3000000 (3000320 blocks of 1 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0.. 2097151:   12583936..  14681087: 2097152:            
   1:  2097152.. 3000319:    9179136..  10082303: 903168:   14681088: last,eof
mnt/a: 2 extents found
`;

// `filefrag -v` without -b: units of the file system block (4096).
const EXT4_BLOCKS = `Filesystem type is: ef53
File size of f1 is 300000 (74 blocks of 4096 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0..      73:    8588351..   8588424:     74:             last,eof
f1: 1 extent found
`;

// btrfs keeps a 1 KiB file inline: offsets in bytes whatever the unit.
const BTRFS_INLINE = `Filesystem type is: 9123683e
File size of my file.bin is 1024 (4 blocks of 1024 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0..    4095:          0..      4095:   4096:             last,not_aligned,inline,eof
my file.bin: 1 extent found
`;

const DELALLOC = `File size of x is 8192 (8192 blocks of 1 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0..    8191:          0..         0:   8192:             last,unknown_loc,delalloc,eof
`;

const ODD_FLAGS = `File size of y is 4096 (4096 blocks of 1 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0..    4095:     409600..    413695:   4096:             last,shared,0x4000,mystery,eof
`;

describe('parseFilefrag', () => {
  it('reads byte-unit rows, with and without the expected column', () => {
    const report = parseFilefrag(EXT4_BYTES);
    expect(report.sizeBytes).toBe(3_000_000);
    expect(report.unitBytes).toBe(1);
    expect(report.extents).toEqual([
      { logical: 0, physical: 12583936, length: 2097152, flags: 0, location: 'mapped' },
      { logical: 2097152, physical: 9179136, length: 903168, flags: ExtentFlag.LAST, location: 'mapped' },
    ]);
  });

  it('scales block-unit rows by the header block size', () => {
    const report = parseFilefrag(EXT4_BLOCKS);
    expect(report.unitBytes).toBe(4096);
    expect(report.extents).toEqual([{ logical: 0, physical: 8588351 * 4096, length: 74 * 4096, flags: ExtentFlag.LAST, location: 'mapped' }]);
  });

  it('keeps inline rows in bytes and says they have no place of their own', () => {
    const [extent] = parseFilefrag(BTRFS_INLINE).extents;
    expect(extent).toMatchObject({ logical: 0, length: 4096, location: 'inline' });
    expect(extent!.flags).toBe(ExtentFlag.LAST | ExtentFlag.NOT_ALIGNED | ExtentFlag.DATA_INLINE);
  });

  it('nulls the physical offset of delayed-allocation extents', () => {
    const [extent] = parseFilefrag(DELALLOC).extents;
    expect(extent).toMatchObject({ physical: null, location: 'delalloc', length: 8192 });
    expect(extent!.flags & ExtentFlag.UNKNOWN).toBeTruthy();
  });

  it('takes hex flags as bits and reports words it does not know', () => {
    const report = parseFilefrag(ODD_FLAGS);
    expect(report.extents[0]!.flags).toBe(ExtentFlag.LAST | ExtentFlag.SHARED | 0x4000);
    expect(report.unknownFlags).toEqual(['mystery']);
  });

  it('finds nothing in output without a table (FIEMAP and FIBMAP both refused)', () => {
    const report = parseFilefrag('Filesystem type is: 1021994\nFile size of /dev/shm/x is 3 (4096 block of 1 bytes)\n');
    expect(report.sizeBytes).toBe(3);
    expect(report.extents).toEqual([]);
  });
});
