/**
 * Splits a byte stream into lines without re-concatenating the stream: complete lines inside a chunk are handed
 * out as views of that chunk; only a line that spans chunks is joined, once, when its newline arrives.
 */
export type LineHandler = (buffer: Buffer, start: number, end: number) => void;

const NEWLINE = 0x0a;

export class LineSplitter {
  private readonly parts: Buffer[] = [];
  private partsBytes = 0;

  constructor(
    private readonly onLine: LineHandler,
    private readonly maxLineBytes: number = 1 << 30,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    let newline = chunk.indexOf(NEWLINE, start);
    while (newline !== -1) {
      if (this.parts.length > 0) this.finishSpanning(chunk, start, newline);
      else this.onLine(chunk, start, newline);
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) this.keep(chunk.subarray(start));
  }

  /** The stream ended: a last line without a newline is still a line. */
  end(): void {
    if (this.parts.length === 0) return;
    const line = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.partsBytes);
    this.parts.length = 0;
    this.partsBytes = 0;
    this.onLine(line, 0, line.length);
  }

  private keep(part: Buffer): void {
    this.partsBytes += part.length;
    if (this.partsBytes > this.maxLineBytes) throw new Error(`line longer than ${this.maxLineBytes} bytes`);
    this.parts.push(part);
  }

  private finishSpanning(chunk: Buffer, start: number, newline: number): void {
    this.keep(chunk.subarray(start, newline));
    const line = Buffer.concat(this.parts, this.partsBytes);
    this.parts.length = 0;
    this.partsBytes = 0;
    this.onLine(line, 0, line.length);
  }
}
