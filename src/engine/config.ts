import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { DeviceSpecSchema, TimingSpecSchema } from '../device/index.js';

/**
 * The engine's configuration: what `sky serve --config FILE` reads and what the quick flags build.
 * Every key is validated; an error names the key and why (see formatConfigError).
 */

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:10809')
  .refine((s) => !/:\d+$/.test(s) || Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be at most 65535');

const exportName = z
  .string()
  .min(1, 'export names must not be empty (the empty name selects the first export)')
  .max(4096, 'export names are at most 4096 bytes (NBD_MAX_STRING)');

const LayerSpecSchema = z.object({ type: z.string() }).passthrough();

export const ExportConfigSchema = z
  .object({
    name: exportName,
    description: z.string().max(4096).default(''),
    readOnly: z.boolean().default(false),
    device: DeviceSpecSchema,
    timing: TimingSpecSchema.optional(),
    /** Layers between the stats layer (always on top) and the device, listed top-down. */
    layers: z.array(LayerSpecSchema).default([]),
    /** Secret a tracer or guest agent presents on the hint channel to send hints for this export (and no other). */
    hintToken: z.string().min(16, 'hint tokens must be at least 16 characters').optional(),
  })
  .strict();

export const ConfigSchema = z
  .object({
    dataDir: z.string().default(defaultDataDir()),
    listen: z
      .object({
        socket: z.string().optional(),
        tcp: hostPort.optional(),
      })
      .strict()
      .default({}),
    log: z
      .object({
        format: z.enum(['pretty', 'json']).default('pretty'),
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      })
      .strict()
      .default({ format: 'pretty', level: 'info' }),
    metrics: z.object({ listen: hostPort }).strict().optional(),
    /** Hint channel listeners (tracers on this host: socket; agents in guests: tcp). */
    hints: z.object({ socket: z.string().optional(), tcp: hostPort.optional() }).strict().optional(),
    exports: z.array(ExportConfigSchema).min(1, 'at least one export is needed'),
  })
  .strict()
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.exports.forEach((e, i) => {
      if (seen.has(e.name)) ctx.addIssue({ code: 'custom', path: ['exports', i, 'name'], message: `duplicate export name "${e.name}"` });
      seen.add(e.name);
    });
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ExportConfig = z.infer<typeof ExportConfigSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** One line per problem, naming the key path: `exports.0.device.size: not a size: "12Q"`. */
export function formatConfigError(error: z.ZodError, source: string): ConfigError {
  const lines = error.issues.map((issue) => {
    const key = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    return `  ${key}: ${issue.message}`;
  });
  return new ConfigError(`invalid configuration in ${source}:\n${lines.join('\n')}`);
}

export function parseConfig(raw: unknown, source: string): Config {
  const result = ConfigSchema.safeParse(raw ?? {});
  if (!result.success) throw formatConfigError(result.error, source);
  return resolvePaths(result.data);
}

/** Reads and validates a YAML config; `overrides` replace top-level keys before validation (e.g. dataDir). */
export function loadConfigFile(file: string, overrides: Record<string, unknown> = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
  }
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) raw = { ...raw, ...overrides };
  return parseConfig(raw, file);
}

/** Relative paths in a config are relative to the data directory, so a config can be moved with its data. */
function resolvePaths(config: Config): Config {
  const dataDir = path.resolve(config.dataDir);
  const within = (p: string) => (path.isAbsolute(p) ? p : path.join(dataDir, p));
  const listen = { ...config.listen };
  if (!listen.socket && !listen.tcp) listen.socket = 'sky.sock';
  if (listen.socket) listen.socket = within(listen.socket);
  const hints = config.hints?.socket ? { ...config.hints, socket: within(config.hints.socket) } : config.hints;
  const exports = config.exports.map((e) => (e.device.type === 'file' ? { ...e, device: { ...e.device, path: within(e.device.path) } } : e));
  return { ...config, dataDir, listen, hints, exports };
}

export function defaultDataDir(): string {
  if (process.env.SKY_DATA_DIR) return process.env.SKY_DATA_DIR;
  if (process.getuid?.() === 0) return '/var/lib/sky';
  const xdg = process.env.XDG_DATA_HOME || path.join(homedir(), '.local', 'share');
  return path.join(xdg, 'sky');
}

export function parseHostPort(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const host = text.slice(0, at).replace(/^\[|\]$/g, '');
  return { host, port: Number(text.slice(at + 1)) };
}
