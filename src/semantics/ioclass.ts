/**
 * I/O classes and the rules that assign them — data, not code. A rules file (YAML, validated here) lists classes
 * (id, name, eviction priority, allocation share) and ordered rules; the first rule whose conditions hold decides
 * the class of a request, `default_class` when none does. Open CAS Linux ioclass CSV files import into the same
 * form (importOpenCasCsv).
 *
 * Class ids are what IoTag.ioClass carries. Eviction priority follows Open CAS: 0 is kept longest, 255 is
 * evicted first; `pinned` classes are never evicted. Allocation is the share (0..1) of the cache a class may fill.
 *
 * The default rules are the paper's table (metadata 5; file < 1 MiB 4; < 2 MiB 3; < 5 MiB 2; < 10 MiB 1; larger 0),
 * preceded by one rule that lets an application-supplied class override. Sizes are binary (1M = 1 MiB), as in
 * src/insight/ioclass.ts and Open CAS.
 *
 * Rule format (YAML):
 *
 *   version: 1
 *   default_class: 0
 *   classes:
 *     - { id: 5, name: metadata, eviction_priority: 0, allocation: 1 }
 *   rules:                          # first match wins
 *     - class: app                  # the application's class, if it names a class defined here
 *       when: { app_class: any }
 *     - class: 5
 *       when: { metadata: true }
 *     - class: 4
 *       when: { file_size: "<1M" }
 *     - class: 2
 *       any:                        # OR of AND-groups; `when` (if given) must hold as well
 *         - { extension: [mp4, mkv] }
 *         - { directory: /srv/media, request_size: ">=64K" }
 *
 * Conditions (all given in one group must hold):
 *   metadata: bool                 file-system metadata (a block outside every known file)
 *   file_size: comparison(s)       "<1M", "<=4096", ">10M", ">=1G", "=0", "!=0", "1M..2M" (half-open), or a list (all hold)
 *   directory: path(s)             the file is at or below this directory
 *   extension: text(s)             after the last '.' of the file name, without the dot (case-sensitive, as Open CAS)
 *   file_name_prefix: text(s)      the file name (last path component) starts with it
 *   process_name: name(s)          the process the tracer last saw using the file (exact)
 *   pid: comparison(s)             that process's pid
 *   request_size: comparison(s)    bytes of the block request
 *   io_direction: read | write     of the block request
 *   lba: comparison(s)             the request's first 512-byte sector (as Open CAS's lba condition)
 *   app_class: any | comparison(s) an application-supplied class (AppHint) is present / compares so
 *   pattern: copy | encrypted      the tracer detected this pattern for the file
 * A condition about a file never holds for metadata or unknown blocks.
 */
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { z } from 'zod';
import { parseSize } from '../device/size.js';

export const IOCLASS_RULES_VERSION = 1;
export const IO_CLASS_ID_MAX = 255;
export const EVICTION_PRIORITY_MAX = 255;
export const RULES_MAX = 1024;
export const SECTOR_BYTES = 512;

export type ComparisonOperator = '<' | '<=' | '>' | '>=' | '=' | '!=';

export interface Comparison {
  op: ComparisonOperator;
  value: number;
}

export type IoDirection = 'read' | 'write';
export type FilePatternName = 'copy' | 'encrypted';

export interface RuleConditions {
  metadata?: boolean;
  file_size?: Comparison[];
  directory?: string[];
  extension?: string[];
  file_name_prefix?: string[];
  process_name?: string[];
  pid?: Comparison[];
  request_size?: Comparison[];
  io_direction?: IoDirection;
  lba?: Comparison[];
  app_class?: 'any' | Comparison[];
  pattern?: FilePatternName;
}

export interface IoClassRule {
  /** The class id the rule assigns, or 'app' for the application-supplied class. */
  class: number | 'app';
  when?: RuleConditions;
  any?: RuleConditions[];
  /** Shown in errors and reports, e.g. "Open CAS class 11: file_size:le:4096&done". */
  note?: string;
}

export interface IoClassDefinition {
  id: number;
  name: string;
  /** 0 (kept longest) .. 255 (evicted first), as Open CAS. */
  evictionPriority: number;
  /** Never evicted (Open CAS: an empty eviction priority). */
  pinned: boolean;
  /** Largest share of the cache the class may occupy, 0..1. */
  allocation: number;
}

export interface IoClassRulesSpec {
  version: 1;
  defaultClass: number;
  classes: IoClassDefinition[];
  rules: IoClassRule[];
}

/** What rules look at. The classify layer reuses one instance per request kind; nothing here is kept. */
export interface ClassifyFacts {
  metadata: boolean;
  file: FileFacts | null;
  requestBytes: number;
  direction: IoDirection;
  /** First 512-byte sector of the request. */
  sector: number;
}

export interface FileFacts {
  path: string | null;
  /** Last path component ('' when the path is unknown). */
  name: string;
  /** After the last '.' of `name`, or null when it has none. */
  extension: string | null;
  size: number;
  pid: number | null;
  process: string | null;
  appClass: number | null;
  copy: boolean;
  encrypted: boolean;
}

export class IoClassRulesError extends Error {
  override readonly name = 'IoClassRulesError';
}

// ---------------------------------------------------------------------------------------------------------------
// Comparisons

const COMPARISON_PATTERN = /^\s*(<=|>=|!=|<|>|=)?\s*([0-9.]+\s*[a-zA-Z]*)\s*$/;
const RANGE_PATTERN = /^\s*([0-9.]+\s*[a-zA-Z]*)\s*\.\.\s*([0-9.]+\s*[a-zA-Z]*)\s*$/;

/** Parses "<1M", ">=4096", "7", "1M..2M" (→ >=1M and <2M). Throws RangeError with the expected forms. */
export function parseComparison(text: string | number): Comparison[] {
  if (typeof text === 'number') return [{ op: '=', value: checkedNumber(text, String(text)) }];
  const range = RANGE_PATTERN.exec(text);
  if (range) {
    const low = parseSize(range[1]!);
    const high = parseSize(range[2]!);
    if (low >= high) throw new RangeError(`empty range "${text}" (the low end must be below the high end)`);
    return [{ op: '>=', value: low }, { op: '<', value: high }];
  }
  const match = COMPARISON_PATTERN.exec(text);
  if (!match) throw new RangeError(`not a comparison: "${text}" (expected e.g. "<1M", ">=10M", "4096", "1M..2M")`);
  let value: number;
  try {
    value = parseSize(match[2]!);
  } catch {
    throw new RangeError(`not a comparison: "${text}" (expected e.g. "<1M", ">=10M", "4096", "1M..2M")`);
  }
  return [{ op: (match[1] ?? '=') as ComparisonOperator, value }];
}

function checkedNumber(value: number, shown: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`"${shown}" is not a whole number ≥ 0`);
  return value;
}

export function compare(value: number, comparisons: readonly Comparison[]): boolean {
  for (const c of comparisons) {
    let holds: boolean;
    switch (c.op) {
      case '<': holds = value < c.value; break;
      case '<=': holds = value <= c.value; break;
      case '>': holds = value > c.value; break;
      case '>=': holds = value >= c.value; break;
      case '=': holds = value === c.value; break;
      case '!=': holds = value !== c.value; break;
    }
    if (!holds) return false;
  }
  return true;
}

function formatComparisons(comparisons: readonly Comparison[]): string | string[] {
  const shown = comparisons.map((c) => `${c.op === '=' ? '' : c.op}${c.value}`);
  return shown.length === 1 ? shown[0]! : shown;
}

// ---------------------------------------------------------------------------------------------------------------
// YAML schema

const comparisonSchema = z.union([z.number(), z.string(), z.array(z.union([z.number(), z.string()])).min(1)]).transform((value, ctx): Comparison[] => {
  try {
    return (Array.isArray(value) ? value : [value]).flatMap((v) => parseComparison(v));
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const textListSchema = z
  .union([z.string().min(1, 'must not be empty'), z.array(z.string().min(1, 'must not be empty')).min(1)])
  .transform((v) => (typeof v === 'string' ? [v] : v));

const directoryListSchema = textListSchema.transform((dirs, ctx) => {
  for (const dir of dirs) {
    if (!dir.startsWith('/')) ctx.addIssue({ code: 'custom', message: `directory "${dir}" must be an absolute path` });
  }
  return dirs.map((dir) => (dir.length > 1 ? dir.replace(/\/+$/, '') : dir));
});

const extensionListSchema = textListSchema.transform((list) => list.map((e) => (e.startsWith('.') ? e.slice(1) : e)));

const conditionsSchema = z
  .object({
    metadata: z.boolean().optional(),
    file_size: comparisonSchema.optional(),
    directory: directoryListSchema.optional(),
    extension: extensionListSchema.optional(),
    file_name_prefix: textListSchema.optional(),
    process_name: textListSchema.optional(),
    pid: comparisonSchema.optional(),
    request_size: comparisonSchema.optional(),
    io_direction: z.enum(['read', 'write']).optional(),
    lba: comparisonSchema.optional(),
    app_class: z.union([z.literal('any'), comparisonSchema]).optional(),
    pattern: z.enum(['copy', 'encrypted']).optional(),
  })
  .strict();

const classIdSchema = z.number().int('class ids are whole numbers').min(0).max(IO_CLASS_ID_MAX);

const ruleSchema = z
  .object({
    class: z.union([classIdSchema, z.literal('app')]),
    when: conditionsSchema.optional(),
    any: z.array(conditionsSchema).min(1, 'any needs at least one group').optional(),
    note: z.string().optional(),
  })
  .strict();

const classSchema = z
  .object({
    id: classIdSchema,
    name: z.string().min(1, 'class names must not be empty'),
    eviction_priority: z.union([z.number().int().min(0).max(EVICTION_PRIORITY_MAX), z.literal('pinned')]),
    allocation: z.number().min(0, 'allocation is a share of the cache, 0..1').max(1, 'allocation is a share of the cache, 0..1').default(1),
  })
  .strict();

const rulesFileSchema = z
  .object({
    version: z.literal(IOCLASS_RULES_VERSION).default(IOCLASS_RULES_VERSION),
    default_class: classIdSchema,
    classes: z.array(classSchema).min(1, 'at least one class is needed'),
    rules: z.array(ruleSchema).max(RULES_MAX),
  })
  .strict()
  .superRefine((file, ctx) => {
    const ids = new Set<number>();
    file.classes.forEach((c, i) => {
      if (ids.has(c.id)) ctx.addIssue({ code: 'custom', path: ['classes', i, 'id'], message: `duplicate class id ${c.id}` });
      ids.add(c.id);
    });
    if (!ids.has(file.default_class)) ctx.addIssue({ code: 'custom', path: ['default_class'], message: `class ${file.default_class} is not defined` });
    file.rules.forEach((r, i) => {
      if (r.class !== 'app' && !ids.has(r.class)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'class'], message: `class ${r.class} is not defined` });
    });
  });

type RulesFile = z.output<typeof rulesFileSchema>;

function formatIssues(error: z.ZodError, source: string): IoClassRulesError {
  const lines = error.issues.map((issue) => `  ${issue.path.length > 0 ? issue.path.join('.') : '(top level)'}: ${issue.message}`);
  return new IoClassRulesError(`invalid ioclass rules in ${source}:\n${lines.join('\n')}`);
}

function fromFile(file: RulesFile): IoClassRulesSpec {
  return {
    version: IOCLASS_RULES_VERSION,
    defaultClass: file.default_class,
    classes: file.classes.map((c) => ({
      id: c.id,
      name: c.name,
      evictionPriority: c.eviction_priority === 'pinned' ? 0 : c.eviction_priority,
      pinned: c.eviction_priority === 'pinned',
      allocation: c.allocation,
    })),
    rules: file.rules.map((r) => ({ class: r.class, when: r.when, any: r.any, note: r.note })),
  };
}

/** Validates a parsed rules document (e.g. inline in the layer config). Errors name the key: `rules.2.when.file_size: …`. */
export function parseIoClassRules(raw: unknown, source = 'ioclass rules'): IoClassRules {
  const result = rulesFileSchema.safeParse(raw);
  if (!result.success) throw formatIssues(result.error, source);
  return new IoClassRules(fromFile(result.data));
}

/** Parses a YAML rules file's text. */
export function parseIoClassRulesYaml(text: string, source = 'ioclass rules'): IoClassRules {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new IoClassRulesError(`${source} is not valid YAML: ${(err as Error).message}`);
  }
  return parseIoClassRules(raw, source);
}

/** The rules as a YAML document that parseIoClassRulesYaml reads back (e.g. after an Open CAS import). */
export function formatIoClassRulesYaml(spec: IoClassRulesSpec): string {
  const conditions = (c: RuleConditions): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(c)) {
      if (value === undefined) continue;
      out[key] = Array.isArray(value) && value.length > 0 && typeof value[0] === 'object' ? formatComparisons(value as Comparison[]) : value;
    }
    return out;
  };
  const doc = {
    version: spec.version,
    default_class: spec.defaultClass,
    classes: spec.classes.map((c) => ({ id: c.id, name: c.name, eviction_priority: c.pinned ? 'pinned' : c.evictionPriority, allocation: c.allocation })),
    rules: spec.rules.map((r) => ({
      class: r.class,
      ...(r.when ? { when: conditions(r.when) } : {}),
      ...(r.any ? { any: r.any.map(conditions) } : {}),
      ...(r.note ? { note: r.note } : {}),
    })),
  };
  return YAML.stringify(doc);
}

// ---------------------------------------------------------------------------------------------------------------
// The paper's table

export const PAPER_IOCLASS_RULES_YAML = `# Sky's default I/O classes: the VEE'17 paper's table. Sizes are binary (1M = 1 MiB).
version: 1
default_class: 0
classes:
  - { id: 5, name: metadata, eviction_priority: 0, allocation: 1 }
  - { id: 4, name: "file < 1 MiB", eviction_priority: 1, allocation: 1 }
  - { id: 3, name: "file < 2 MiB", eviction_priority: 2, allocation: 1 }
  - { id: 2, name: "file < 5 MiB", eviction_priority: 3, allocation: 1 }
  - { id: 1, name: "file < 10 MiB", eviction_priority: 4, allocation: 1 }
  - { id: 0, name: "file >= 10 MiB", eviction_priority: 5, allocation: 1 }
rules:
  - { class: app, when: { app_class: any }, note: "application-supplied classes override" }
  - { class: 5, when: { metadata: true } }
  - { class: 4, when: { file_size: "<1M" } }
  - { class: 3, when: { file_size: "<2M" } }
  - { class: 2, when: { file_size: "<5M" } }
  - { class: 1, when: { file_size: "<10M" } }
  - { class: 0, when: { file_size: ">=10M" } }
`;

export function paperIoClassRules(): IoClassRules {
  return parseIoClassRulesYaml(PAPER_IOCLASS_RULES_YAML, 'the default (paper) rules');
}

// ---------------------------------------------------------------------------------------------------------------
// Compiled rules

type Predicate = (facts: ClassifyFacts) => boolean;

const REQUEST_KEYS: ReadonlySet<string> = new Set(['request_size', 'io_direction', 'lba']);

function compileConditions(c: RuleConditions): Predicate[] {
  const out: Predicate[] = [];
  if (c.metadata !== undefined) {
    const want = c.metadata;
    out.push((f) => f.metadata === want);
  }
  if (c.file_size) {
    const cmp = c.file_size;
    out.push((f) => f.file !== null && compare(f.file.size, cmp));
  }
  if (c.directory) {
    const dirs = c.directory;
    out.push((f) => f.file !== null && f.file.path !== null && dirs.some((d) => d === '/' || f.file!.path === d || f.file!.path!.startsWith(d + '/')));
  }
  if (c.extension) {
    const list = c.extension;
    out.push((f) => f.file !== null && f.file.extension !== null && list.includes(f.file.extension));
  }
  if (c.file_name_prefix) {
    const list = c.file_name_prefix;
    out.push((f) => f.file !== null && list.some((p) => f.file!.name.startsWith(p)));
  }
  if (c.process_name) {
    const list = c.process_name;
    out.push((f) => f.file !== null && f.file.process !== null && list.includes(f.file.process));
  }
  if (c.pid) {
    const cmp = c.pid;
    out.push((f) => f.file !== null && f.file.pid !== null && compare(f.file.pid, cmp));
  }
  if (c.request_size) {
    const cmp = c.request_size;
    out.push((f) => compare(f.requestBytes, cmp));
  }
  if (c.io_direction) {
    const want = c.io_direction;
    out.push((f) => f.direction === want);
  }
  if (c.lba) {
    const cmp = c.lba;
    out.push((f) => compare(f.sector, cmp));
  }
  if (c.app_class) {
    const cmp = c.app_class;
    out.push((f) => f.file !== null && f.file.appClass !== null && (cmp === 'any' || compare(f.file.appClass, cmp)));
  }
  if (c.pattern) {
    const want = c.pattern;
    out.push((f) => f.file !== null && (want === 'copy' ? f.file.copy : f.file.encrypted));
  }
  return out;
}

interface CompiledRule {
  target: number | 'app';
  groups: Predicate[][];
}

/** A validated, compiled rule set. Immutable. */
export class IoClassRules {
  readonly spec: IoClassRulesSpec;
  /** True when no rule looks at the request (size, direction, lba): a file's class then depends on the file only. */
  readonly fileOnly: boolean;
  private readonly compiled: CompiledRule[];
  private readonly byId = new Map<number, IoClassDefinition>();

  constructor(spec: IoClassRulesSpec) {
    for (const c of spec.classes) {
      assert.ok(!this.byId.has(c.id), `duplicate class id ${c.id}`);
      this.byId.set(c.id, c);
    }
    assert.ok(this.byId.has(spec.defaultClass), 'the default class is defined');
    this.spec = spec;
    let fileOnly = true;
    this.compiled = spec.rules.map((rule) => {
      assert.ok(rule.class === 'app' || this.byId.has(rule.class), `rule class ${rule.class} is defined`);
      for (const group of [rule.when ?? {}, ...(rule.any ?? [])]) {
        for (const [key, value] of Object.entries(group)) if (value !== undefined && REQUEST_KEYS.has(key)) fileOnly = false;
      }
      const when = rule.when ? compileConditions(rule.when) : [];
      const groups = rule.any ? rule.any.map((g) => [...when, ...compileConditions(g)]) : [when];
      return { target: rule.class, groups };
    });
    this.fileOnly = fileOnly;
  }

  get classes(): readonly IoClassDefinition[] {
    return this.spec.classes;
  }

  get defaultClass(): number {
    return this.spec.defaultClass;
  }

  classById(id: number): IoClassDefinition | undefined {
    return this.byId.get(id);
  }

  /** The class of a request with these facts: the first matching rule's, else the default class. */
  classify(facts: ClassifyFacts): number {
    for (const rule of this.compiled) {
      if (!matchesAnyGroup(rule.groups, facts)) continue;
      if (rule.target !== 'app') return rule.target;
      const app = facts.file?.appClass ?? null;
      if (app !== null && this.byId.has(app)) return app;
    }
    return this.spec.defaultClass;
  }
}

function matchesAnyGroup(groups: readonly Predicate[][], facts: ClassifyFacts): boolean {
  for (const group of groups) {
    let holds = true;
    for (const predicate of group) {
      if (!predicate(facts)) {
        holds = false;
        break;
      }
    }
    if (holds) return true;
  }
  return false;
}

/** File facts from a path (name and extension derived as Open CAS does: after the last '/' and the last '.'). */
export function fileFacts(path: string | null, size: number, extra: Partial<Omit<FileFacts, 'path' | 'name' | 'extension' | 'size'>> = {}): FileFacts {
  const name = path === null ? '' : path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  return {
    path,
    name,
    extension: dot < 0 ? null : name.slice(dot + 1),
    size,
    pid: extra.pid ?? null,
    process: extra.process ?? null,
    appClass: extra.appClass ?? null,
    copy: extra.copy ?? false,
    encrypted: extra.encrypted ?? false,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Open CAS Linux ioclass CSV import

/** Open CAS limits (OCF_IO_CLASS_ID_MAX, the prefetch class, OCF_IO_CLASS_PRIO_LOWEST). */
export const OPEN_CAS_CLASS_ID_MAX = 32;
export const OPEN_CAS_PREFETCH_CLASS_ID = 33;
const OPEN_CAS_COLUMNS = ['IO class id', 'IO class name', 'Eviction priority', 'Allocation'] as const;
const OPEN_CAS_NAME_MAX = 1023;

export interface OpenCasImport {
  rules: IoClassRules;
  /** Conditions Sky cannot see (e.g. `direct`): the rule groups using them never match. */
  warnings: string[];
}

const CAS_NUMERIC_OPERATORS: Record<string, ComparisonOperator> = { eq: '=', ne: '!=', lt: '<', gt: '>', le: '<=', ge: '>=' };
const CAS_NUMERIC_KEYS: Record<string, 'file_size' | 'pid' | 'request_size' | 'lba'> = {
  file_size: 'file_size',
  pid: 'pid',
  request_size: 'request_size',
  lba: 'lba',
};
const CAS_STRING_KEYS: Record<string, 'directory' | 'extension' | 'file_name_prefix' | 'process_name'> = {
  directory: 'directory',
  extension: 'extension',
  file_name_prefix: 'file_name_prefix',
  process_name: 'process_name',
};
const CAS_UNSUPPORTED = new Set(['io_class', 'core_id', 'file_offset', 'wlth', 'cgroup']);

type CasCondition = { key: string; condition: RuleConditions | null };

/**
 * Imports an Open CAS Linux ioclass configuration (casadm --io-class --load-config). Semantics are kept: rules run
 * in ascending class id, a matching rule sets the class, `done` stops. In first-match form that is: the rules
 * ending in `done` in ascending id, then the others in descending id (the last match without `done` wins).
 * Conditions joined by `&` and `|` fold left to right, as the kernel evaluates them, and become OR-of-AND groups.
 * The `lba` condition counts 512-byte sectors and `request_size` bytes, as in Open CAS. As in Sky's default
 * rules, one rule goes first: an application-supplied class (AppHint) naming a class of the file overrides.
 */
export function importOpenCasCsv(text: string, source = 'ioclass CSV'): OpenCasImport {
  const lines = text.split(/\r?\n/);
  const fail = (line: number, message: string): never => {
    throw new IoClassRulesError(`${source}: line ${line}: ${message}`);
  };
  const headerIndex = lines.findIndex((l) => l.trim() !== '');
  if (headerIndex < 0) throw new IoClassRulesError(`${source}: empty IO class configuration`);
  const header = lines[headerIndex]!.split(',').map((c) => c.trim());
  const position = new Map<string, number>();
  header.forEach((name, i) => {
    if (!(OPEN_CAS_COLUMNS as readonly string[]).includes(name)) fail(headerIndex + 1, `unknown column "${name}"`);
    position.set(name, i);
  });
  for (const column of OPEN_CAS_COLUMNS) if (!position.has(column)) fail(headerIndex + 1, `missing column "${column}"`);

  const classes: IoClassDefinition[] = [];
  const finalRules: { id: number; rule: IoClassRule }[] = [];
  const otherRules: { id: number; rule: IoClassRule }[] = [];
  const warnings: string[] = [];
  for (let n = headerIndex + 1; n < lines.length; n++) {
    if (lines[n]!.trim() === '') continue;
    const lineNumber = n + 1;
    const cells = lines[n]!.split(',').map((c) => c.trim());
    if (cells.length !== header.length) fail(lineNumber, `expected ${header.length} columns, found ${cells.length}`);
    const cell = (column: (typeof OPEN_CAS_COLUMNS)[number]) => cells[position.get(column)!]!;
    const id = parseCasId(cell('IO class id'), (m) => fail(lineNumber, m));
    if (classes.some((c) => c.id === id)) fail(lineNumber, `double configuration for IO class id ${id}`);
    const name = cell('IO class name');
    if (name.length === 0 || name.length > OPEN_CAS_NAME_MAX || /["\x00-\x1f\x7f-\uffff]/.test(name)) {
      fail(lineNumber, 'IO class name must be 1..1023 printable ASCII characters without commas or quotes');
    }
    const priorityText = cell('Eviction priority');
    let evictionPriority = 0;
    const pinned = priorityText === '';
    if (!pinned) {
      if (!/^\d+$/.test(priorityText) || Number(priorityText) > EVICTION_PRIORITY_MAX) fail(lineNumber, `eviction priority "${priorityText}" must be 0..255 (empty = pinned)`);
      evictionPriority = Number(priorityText);
    }
    const allocation = parseCasAllocation(cell('Allocation'), (m) => fail(lineNumber, m));
    classes.push({ id, name, evictionPriority, pinned, allocation });

    if (id === 0) {
      if (name !== 'unclassified') fail(lineNumber, `IO class 0 must have the name "unclassified", not "${name}"`);
      continue;
    }
    if (name === 'prefetch') {
      if (id !== OPEN_CAS_PREFETCH_CLASS_ID) fail(lineNumber, `"prefetch" must be IO class ${OPEN_CAS_PREFETCH_CLASS_ID}`);
      continue; // OCF's prefetch class: a class without a rule
    }
    if (id > OPEN_CAS_CLASS_ID_MAX) fail(lineNumber, `IO class id ${id} is above ${OPEN_CAS_CLASS_ID_MAX}`);
    const parsed = parseCasRule(name, (m) => fail(lineNumber, `IO class ${id} "${name}": ${m}`));
    const note = `Open CAS class ${id}: ${name}`;
    if (parsed.unsupported.length > 0) warnings.push(`line ${lineNumber} (IO class ${id}): Sky cannot see ${parsed.unsupported.join(', ')}; groups using it never match`);
    if (parsed.groups.length === 0) continue;
    const rule: IoClassRule = parsed.groups.length === 1 ? { class: id, when: parsed.groups[0], note } : { class: id, any: parsed.groups, note };
    (parsed.final ? finalRules : otherRules).push({ id, rule });
  }
  if (!classes.some((c) => c.id === 0)) classes.unshift({ id: 0, name: 'unclassified', evictionPriority: EVICTION_PRIORITY_MAX, pinned: false, allocation: 1 });
  const rules: IoClassRule[] = [
    { class: 'app', when: { app_class: 'any' }, note: 'Sky: application-supplied classes override' },
    ...[...finalRules.sort((a, b) => a.id - b.id), ...otherRules.sort((a, b) => b.id - a.id)].map((r) => r.rule),
  ];
  return { rules: new IoClassRules({ version: IOCLASS_RULES_VERSION, defaultClass: 0, classes, rules }), warnings };
}

function parseCasId(text: string, fail: (message: string) => never): number {
  if (!/^\d+$/.test(text)) fail(`IO class id "${text}" is not a number`);
  const id = Number(text);
  if (id > OPEN_CAS_PREFETCH_CLASS_ID) fail(`IO class id ${id} is above ${OPEN_CAS_PREFETCH_CLASS_ID}`);
  return id;
}

/** Open CAS: a fraction 0..1 written in at most 4 characters ("1", "0.5", "0.25"). */
function parseCasAllocation(text: string, fail: (message: string) => never): number {
  if (text.length === 0 || text.length > 4 || !/^\d*\.?\d*$/.test(text)) fail(`allocation "${text}" must be a number 0.00..1.00`);
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || value > 1) fail(`allocation "${text}" must be a number 0.00..1.00`);
  return Math.round(value * 100) / 100;
}

/** Parses `cond[:operand]` joined by `&`/`|` into OR-of-AND groups; `done` must end the rule, joined by `&`. */
function parseCasRule(text: string, fail: (message: string) => never): { groups: RuleConditions[]; final: boolean; unsupported: string[] } {
  const tokens = text.split(/([&|])/);
  let groups: CasCondition[][] = [];
  let final = false;
  const unsupported: string[] = [];
  for (let t = 0; t < tokens.length; t += 2) {
    const operator = t === 0 ? '|' : tokens[t - 1]!;
    const raw = tokens[t]!;
    if (raw === '') fail('empty condition');
    if (final) fail('"done" must be the last condition');
    const colon = raw.indexOf(':');
    const key = colon < 0 ? raw : raw.slice(0, colon);
    const operand = colon < 0 ? null : raw.slice(colon + 1);
    if (key === 'done') {
      if (operand !== null) fail('"done" takes no operand');
      if (t > 0 && operator !== '&') fail('"done" must be joined with "&"');
      final = true;
      continue;
    }
    const condition = parseCasCondition(key, operand, fail);
    if (condition.condition === null && !unsupported.includes(key)) unsupported.push(key);
    if (operator === '|' || groups.length === 0) groups.push([condition]);
    else groups = groups.map((g) => [...g, condition]);
  }
  // Groups containing a condition Sky cannot see never match; the rest become plain condition sets.
  const usable = groups.filter((g) => g.every((c) => c.condition !== null)).map((g) => mergeCasGroup(g, fail));
  if (groups.length === 0) return { groups: [{}], final, unsupported };
  return { groups: usable, final, unsupported };
}

function mergeCasGroup(group: CasCondition[], fail: (message: string) => never): RuleConditions {
  const merged: RuleConditions = {};
  for (const { key, condition } of group) {
    for (const [k, v] of Object.entries(condition!)) {
      const slot = merged as Record<string, unknown>;
      if (slot[k] === undefined) slot[k] = v;
      else if (k === 'file_size' || k === 'pid' || k === 'request_size' || k === 'lba') slot[k] = [...(slot[k] as Comparison[]), ...(v as Comparison[])];
      else if (JSON.stringify(slot[k]) !== JSON.stringify(v)) fail(`"${key}" appears twice with different values joined by "&" (can never match)`);
    }
  }
  return merged;
}

function parseCasCondition(key: string, operand: string | null, fail: (message: string) => never): CasCondition {
  if (key === 'metadata') {
    if (operand !== null) fail('"metadata" takes no operand');
    return { key, condition: { metadata: true } };
  }
  if (key === 'direct') {
    if (operand !== null) fail('"direct" takes no operand');
    return { key, condition: null };
  }
  if (key === 'io_direction') {
    if (operand !== 'read' && operand !== 'write') fail(`io_direction needs "read" or "write", not "${operand ?? ''}"`);
    return { key, condition: { io_direction: operand } };
  }
  const numeric = CAS_NUMERIC_KEYS[key];
  if (numeric) {
    if (operand === null || operand === '') fail(`"${key}" needs a numeric operand, e.g. ${key}:le:4096`);
    const colon = operand.indexOf(':');
    const opName = colon < 0 ? 'eq' : operand.slice(0, colon);
    const valueText = colon < 0 ? operand : operand.slice(colon + 1);
    const op = CAS_NUMERIC_OPERATORS[opName];
    if (!op) fail(`unknown numeric operator "${opName}" (eq, ne, lt, gt, le, ge)`);
    if (!/^\d+$/.test(valueText) || !Number.isSafeInteger(Number(valueText))) fail(`"${valueText}" is not a whole number`);
    return { key, condition: { [numeric]: [{ op, value: Number(valueText) }] } };
  }
  const stringKey = CAS_STRING_KEYS[key];
  if (stringKey) {
    if (operand === null || operand === '') fail(`"${key}" needs an operand, e.g. ${key}:${key === 'directory' ? '/data' : 'log'}`);
    if (stringKey === 'directory' && !operand.startsWith('/')) fail(`directory "${operand}" must be an absolute path`);
    const value = stringKey === 'directory' && operand.length > 1 ? operand.replace(/\/+$/, '') : operand;
    return { key, condition: { [stringKey]: [value] } };
  }
  if (CAS_UNSUPPORTED.has(key)) fail(`condition "${key}" is not supported by Sky`);
  return fail(`unknown condition "${key}"`);
}
