/** `record`: every event the session yields, one JSON object per line (the replay backend's input). */
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { SyscallEvent } from './events.js';

export class Recorder {
  private readonly stream: WriteStream;
  private failure: Error | null = null;

  /** `fd` is the record file, opened (and so checked) by the caller; the recorder closes it. */
  constructor(fd: number) {
    this.stream = createWriteStream('', { fd });
    this.stream.on('error', (error) => {
      this.failure ??= error;
    });
  }

  write(event: SyscallEvent): void {
    if (this.failure) return;
    this.stream.write(`${JSON.stringify(event)}\n`);
  }

  /** Flushes and closes the file; rejects when any write failed. */
  async close(): Promise<void> {
    if (!this.stream.closed) {
      this.stream.end();
      await once(this.stream, 'close').catch(() => undefined);
    }
    if (this.failure) throw this.failure;
  }
}
