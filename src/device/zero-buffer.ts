/** Shared by every device and never written into: slow zeroing paths write from it. */
export const ZERO_BUFFER_BYTES = 1024 * 1024;
export const ZERO_BUFFER: Buffer = Buffer.alloc(ZERO_BUFFER_BYTES);
