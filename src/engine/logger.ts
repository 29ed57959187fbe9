import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

/** Human-readable logs on stderr by default; JSON lines (one object per line) when asked. */
export function createLogger(format: 'pretty' | 'json', level: string): Logger {
  if (format === 'json') return pino({ level }, pino.destination({ fd: 2, sync: true }));
  const stream = pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true });
  return pino({ level }, stream);
}
