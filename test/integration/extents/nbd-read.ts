/** Reading byte ranges of an export through the NBD protocol (libnbd's Python binding), for the extents tests. */
import { libnbdPython } from '../../helpers/index.js';

/** Reads ranges through the NBD export with libnbd; prints one sha256 per range. */
const READ_RANGES = `
import hashlib
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for spec in sys.argv[2:]:
    offset, length = map(int, spec.split(':'))
    digest = hashlib.sha256()
    while length > 0:
        step = min(length, 4 * 1024 * 1024)
        digest.update(h.pread(step, offset))
        offset += step
        length -= step
    print(digest.hexdigest())
h.shutdown()
`;

export async function readThroughNbd(uri: string, ranges: Array<{ offset: number; length: number }>): Promise<string[]> {
  const result = await libnbdPython(READ_RANGES, [uri, ...ranges.map((range) => `${range.offset}:${range.length}`)]);
  if (result.code !== 0) throw new Error(`libnbd read failed: ${result.stderr}`);
  return result.stdout.trim().split('\n');
}

