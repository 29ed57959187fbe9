/**
 * Parser for `filefrag -v` output (e2fsprogs), the fallback when FIEMAP cannot be called from here. With `-e` the
 * FIBMAP path prints the same table, so one parser reads both.
 *
 *   File size of PATH is 300000 (303104 blocks of 1 bytes)
 *    ext:     logical_offset:        physical_offset: length:   expected: flags:
 *      0:        0..  303103: 35177885696..35178188799: 303104:             last,eof
 *
 * Offsets and lengths are in units of the header's block size (1 with -b1); rows flagged `inline` are always in
 * bytes (filefrag prints them unshifted). `unknown_loc` rows print physical 0. `eof` is filefrag's own marker.
 */
import assert from 'node:assert/strict';
import { FILEFRAG_FLAG_NAMES, makeExtent, type FileExtent } from './extent.js';

export interface FilefragReport {
  /** From the header line; null when it is missing. */
  sizeBytes: number | null;
  /** The unit of the table's numbers. */
  unitBytes: number;
  extents: FileExtent[];
  /** Flag words filefrag printed that are not FIEMAP bits we know (e.g. hex values of new flags). */
  unknownFlags: string[];
}

const HEADER = /^File size of .* is (\d+) \((\d+) blocks? of (\d+) bytes\)$/;
const ROW = /^\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*(\d+):\s*(?:(\d+):)?\s*(\S*)\s*$/;

export function parseFilefrag(output: string): FilefragReport {
  let sizeBytes: number | null = null;
  let unitBytes = 1;
  const extents: FileExtent[] = [];
  const unknownFlags: string[] = [];
  for (const line of output.split('\n')) {
    const header = HEADER.exec(line);
    if (header) {
      sizeBytes = Number(header[1]);
      unitBytes = Number(header[3]);
      assert.ok(unitBytes > 0 && Number.isSafeInteger(unitBytes), 'filefrag unit');
      continue;
    }
    const row = ROW.exec(line);
    if (!row) continue;
    extents.push(parseRow(row, unitBytes, unknownFlags));
  }
  return { sizeBytes, unitBytes, extents, unknownFlags };
}

function parseRow(row: RegExpExecArray, unitBytes: number, unknownFlags: string[]): FileExtent {
  const words = row[8] === '' ? [] : row[8]!.split(',');
  let flags = 0;
  for (const word of words) {
    const bit = FILEFRAG_FLAG_NAMES[word];
    if (bit !== undefined) flags |= bit;
    else if (/^0x[0-9a-f]+$/i.test(word)) flags |= parseInt(word, 16);
    else if (word !== 'eof' && word !== 'hole') unknownFlags.push(word);
  }
  const unit = words.includes('inline') ? 1 : unitBytes;
  const logicalFirst = Number(row[2]);
  const physicalFirst = Number(row[4]);
  const lengthUnits = Number(row[6]);
  const logicalLast = Number(row[3]);
  // The length column is rounded down to units; the logical range (first..last, inclusive) is not.
  const length = Math.max(lengthUnits, logicalLast - logicalFirst + 1) * unit;
  return makeExtent(logicalFirst * unit, physicalFirst * unit, length, flags);
}
