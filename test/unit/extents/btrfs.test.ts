import { describe, expect, it } from 'vitest';
import {
  BlockGroupType,
  chunkDevids,
  findChunk,
  logicalToDevice,
  parseChunkSearchBuffer,
  parseDumpTreeChunks,
  writeChunkSearchKey,
  type BtrfsChunk,
} from '../../../src/insight/extents/btrfs.js';

// `btrfs inspect-internal dump-tree -t chunk` of a fresh 256 MiB file system (btrfs-progs 6.2), plus one data chunk.
const DUMP = `chunk tree
leaf 22036480 items 5 free space 15781 generation 6 owner CHUNK_TREE
	item 0 key (DEV_ITEMS DEV_ITEM 1) itemoff 16185 itemsize 98
		devid 1 total_bytes 268435456 bytes_used 92274688
		io_align 4096 io_width 4096 sector_size 4096 type 0
	item 1 key (FIRST_CHUNK_TREE CHUNK_ITEM 13631488) itemoff 16105 itemsize 80
		length 8388608 owner 2 stripe_len 65536 type DATA|single
		io_align 65536 io_width 65536 sector_size 4096
		num_stripes 1 sub_stripes 1
			stripe 0 devid 1 offset 13631488
			dev_uuid 5b3df166-f7c3-4c8b-ac3a-e7e01d67cae6
	item 2 key (FIRST_CHUNK_TREE CHUNK_ITEM 22020096) itemoff 15993 itemsize 112
		length 8388608 owner 2 stripe_len 65536 type SYSTEM|DUP
		io_align 65536 io_width 65536 sector_size 4096
		num_stripes 2 sub_stripes 1
			stripe 0 devid 1 offset 22020096
			dev_uuid 5b3df166-f7c3-4c8b-ac3a-e7e01d67cae6
			stripe 1 devid 1 offset 30408704
			dev_uuid 5b3df166-f7c3-4c8b-ac3a-e7e01d67cae6
	item 3 key (FIRST_CHUNK_TREE CHUNK_ITEM 30408704) itemoff 15881 itemsize 112
		length 33554432 owner 2 stripe_len 65536 type METADATA|DUP
		num_stripes 2 sub_stripes 1
			stripe 0 devid 1 offset 38797312
			stripe 1 devid 1 offset 72351744
	item 4 key (FIRST_CHUNK_TREE CHUNK_ITEM 63963136) itemoff 15801 itemsize 80
		length 33554432 owner 2 stripe_len 65536 type DATA
		num_stripes 1 sub_stripes 1
			stripe 0 devid 1 offset 105906176
`;

describe('chunk tree from dump-tree', () => {
  it('parses chunks with their types and stripes', () => {
    const chunks = parseDumpTreeChunks(DUMP);
    expect(chunks.map((chunk) => chunk.logical)).toEqual([13631488, 22020096, 30408704, 63963136]);
    expect(chunks[1]).toEqual({
      logical: 22020096,
      length: 8388608,
      type: BlockGroupType.SYSTEM | BlockGroupType.DUP,
      stripes: [
        { devid: 1, offset: 22020096 },
        { devid: 1, offset: 30408704 },
      ],
    });
    expect(chunks[3]!.type).toBe(BlockGroupType.DATA);
    expect(chunkDevids(chunks)).toEqual([1]);
  });
});

/** A TREE_SEARCH reply holding `chunks` as chunk items, with one non-chunk item first. */
function searchReply(chunks: BtrfsChunk[]): Buffer {
  const buffer = Buffer.alloc(4096);
  writeChunkSearchKey(buffer, 0n);
  let at = 104;
  const item = (type: number, offset: number, body: Buffer) => {
    buffer.writeBigUInt64LE(7n, at); // transid
    buffer.writeBigUInt64LE(256n, at + 8);
    buffer.writeBigUInt64LE(BigInt(offset), at + 16);
    buffer.writeUInt32LE(type, at + 24);
    buffer.writeUInt32LE(body.length, at + 28);
    body.copy(buffer, at + 32);
    at += 32 + body.length;
  };
  item(216, 1, Buffer.alloc(20)); // some other item type
  for (const chunk of chunks) {
    const body = Buffer.alloc(48 + 32 * chunk.stripes.length);
    body.writeBigUInt64LE(BigInt(chunk.length), 0);
    body.writeBigUInt64LE(2n, 8);
    body.writeBigUInt64LE(65536n, 16);
    body.writeBigUInt64LE(BigInt(chunk.type), 24);
    body.writeUInt16LE(chunk.stripes.length, 44);
    body.writeUInt16LE(1, 46);
    chunk.stripes.forEach((stripe, index) => {
      body.writeBigUInt64LE(BigInt(stripe.devid), 48 + 32 * index);
      body.writeBigUInt64LE(BigInt(stripe.offset), 56 + 32 * index);
    });
    item(228, chunk.logical, body);
  }
  buffer.writeUInt32LE(1 + chunks.length, 64);
  return buffer;
}

describe('chunk tree from TREE_SEARCH', () => {
  it('writes the search key for chunk items of the chunk tree', () => {
    const buffer = Buffer.alloc(4096);
    writeChunkSearchKey(buffer, 5n);
    expect(buffer.readBigUInt64LE(0)).toBe(3n);
    expect(buffer.readBigUInt64LE(8)).toBe(256n);
    expect(buffer.readBigUInt64LE(24)).toBe(5n);
    expect(buffer.readUInt32LE(56)).toBe(228);
    expect(buffer.readUInt32LE(60)).toBe(228);
  });

  it('decodes chunk items and skips other items', () => {
    const chunks = parseDumpTreeChunks(DUMP);
    expect(parseChunkSearchBuffer(searchReply(chunks))).toEqual(chunks);
  });
});

describe('logicalToDevice', () => {
  const chunks = parseDumpTreeChunks(DUMP);

  it('maps a single-copy data range', () => {
    expect(logicalToDevice(chunks, 63963136 + 4096, 8192)).toEqual([{ deviceOffset: 105906176 + 4096, length: 8192, logical: 63963136 + 4096, devid: 1 }]);
  });

  it('returns every copy of a DUP range', () => {
    expect(logicalToDevice(chunks, 30408704 + 16384, 16384).map((range) => range.deviceOffset)).toEqual([38797312 + 16384, 72351744 + 16384]);
  });

  it('splits a range where chunks end', () => {
    const adjacent: BtrfsChunk[] = [
      { logical: 0, length: 100, type: BlockGroupType.DATA, stripes: [{ devid: 1, offset: 1000 }] },
      { logical: 100, length: 100, type: BlockGroupType.DATA, stripes: [{ devid: 1, offset: 5000 }] },
    ];
    expect(logicalToDevice(adjacent, 50, 100)).toEqual([
      { deviceOffset: 1050, length: 50, logical: 50, devid: 1 },
      { deviceOffset: 5000, length: 50, logical: 100, devid: 1 },
    ]);
  });

  it('refuses addresses outside every chunk and striped profiles', () => {
    expect(() => logicalToDevice(chunks, 0, 4096)).toThrow(/in no chunk/);
    const striped: BtrfsChunk[] = [{ logical: 0, length: 100, type: BlockGroupType.DATA | BlockGroupType.RAID0, stripes: [{ devid: 1, offset: 0 }, { devid: 2, offset: 0 }] }];
    expect(() => logicalToDevice(striped, 0, 10)).toThrow(/striped/);
    expect(findChunk(chunks, 63963136 + 33554432)).toBeNull();
    expect(findChunk(chunks, 13631488 + 8388608)!.logical).toBe(22020096);
  });
});
