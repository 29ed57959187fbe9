/** A tracer could not start (or its helper process died): the message names what is missing and how to fix it. */
export class TraceError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TraceError';
  }
}
