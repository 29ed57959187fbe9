import { describe, expect, it } from 'vitest';
import {
  fileFacts, formatIoClassRulesYaml, importOpenCasCsv, paperIoClassRules, parseComparison, parseIoClassRulesYaml,
  type ClassifyFacts, type FileFacts, type IoClassRules,
} from '../../../src/semantics/ioclass.js';

const MiB = 1024 * 1024;

function data(file: FileFacts, request: Partial<ClassifyFacts> = {}): ClassifyFacts {
  return { metadata: false, file, requestBytes: 4096, direction: 'read', sector: 0, ...request };
}
const metadata: ClassifyFacts = { metadata: true, file: null, requestBytes: 4096, direction: 'read', sector: 0 };
const unknown: ClassifyFacts = { metadata: false, file: null, requestBytes: 4096, direction: 'read', sector: 0 };
const sized = (size: number) => data(fileFacts('/home/u/f.bin', size));

describe('comparisons', () => {
  it('parse sizes, operators and ranges', () => {
    expect(parseComparison('<1M')).toEqual([{ op: '<', value: MiB }]);
    expect(parseComparison('>= 10M')).toEqual([{ op: '>=', value: 10 * MiB }]);
    expect(parseComparison('4096')).toEqual([{ op: '=', value: 4096 }]);
    expect(parseComparison(7)).toEqual([{ op: '=', value: 7 }]);
    expect(parseComparison('!=0')).toEqual([{ op: '!=', value: 0 }]);
    expect(parseComparison('1M..2M')).toEqual([{ op: '>=', value: MiB }, { op: '<', value: 2 * MiB }]);
    expect(() => parseComparison('<<1M')).toThrow('not a comparison: "<<1M" (expected e.g. "<1M", ">=10M", "4096", "1M..2M")');
    expect(() => parseComparison('2M..1M')).toThrow('empty range "2M..1M"');
  });
});

describe('the paper rules (default)', () => {
  const rules = paperIoClassRules();

  it('class by metadata and file size, with the paper\'s boundaries (binary MB)', () => {
    expect(rules.classify(metadata)).toBe(5);
    expect(rules.classify(sized(0))).toBe(4);
    expect(rules.classify(sized(MiB - 1))).toBe(4);
    expect(rules.classify(sized(MiB))).toBe(3);
    expect(rules.classify(sized(2 * MiB - 1))).toBe(3);
    expect(rules.classify(sized(2 * MiB))).toBe(2);
    expect(rules.classify(sized(5 * MiB - 1))).toBe(2);
    expect(rules.classify(sized(5 * MiB))).toBe(1);
    expect(rules.classify(sized(10 * MiB - 1))).toBe(1);
    expect(rules.classify(sized(10 * MiB))).toBe(0);
    expect(rules.classify(sized(100 * 1024 * MiB))).toBe(0);
    expect(rules.classify(unknown)).toBe(0);
    expect(rules.fileOnly).toBe(true);
  });

  it('let an application-supplied class override, if the class exists', () => {
    expect(rules.classify(data(fileFacts('/db/big', 50 * MiB, { appClass: 4 })))).toBe(4);
    expect(rules.classify(data(fileFacts('/db/small', 10, { appClass: 0 })))).toBe(0);
    expect(rules.classify(data(fileFacts('/db/small', 10, { appClass: 99 })))).toBe(4); // undefined class: ignored
  });

  it('define classes with eviction priority and allocation', () => {
    expect(rules.classes.map((c) => [c.id, c.name, c.evictionPriority, c.allocation])).toEqual([
      [5, 'metadata', 0, 1],
      [4, 'file < 1 MiB', 1, 1],
      [3, 'file < 2 MiB', 2, 1],
      [2, 'file < 5 MiB', 3, 1],
      [1, 'file < 10 MiB', 4, 1],
      [0, 'file >= 10 MiB', 5, 1],
    ]);
  });
});

const CUSTOM = `
version: 1
default_class: 0
classes:
  - { id: 0, name: rest, eviction_priority: 200 }
  - { id: 1, name: logs, eviction_priority: 100, allocation: 0.1 }
  - { id: 2, name: media, eviction_priority: 50, allocation: 0.5 }
  - { id: 3, name: keys, eviction_priority: pinned }
  - { id: 4, name: small, eviction_priority: 10 }
  - { id: 5, name: meta, eviction_priority: 0 }
rules:
  - class: 3
    when: { process_name: gpg, pattern: encrypted }
  - class: 5
    when: { metadata: true }
  - class: 1
    when: { directory: /var/log/ }
    any:
      - { extension: log }
      - { file_name_prefix: [syslog, messages] }
  - class: 2
    any:
      - { extension: [.mp4, mkv] }
      - { directory: /srv/media, request_size: ">=64K", io_direction: read }
  - class: 4
    when: { file_size: [">=1", "<16K"], pid: "1000..2000" }
  - class: 0
    when: { lba: ">=1000000" }
  - class: app
    when: { app_class: ">=1" }
`;

describe('custom rules', () => {
  const rules: IoClassRules = parseIoClassRulesYaml(CUSTOM, 'custom.yaml');

  it('apply the first matching rule, in order', () => {
    const gpg = fileFacts('/var/log/x.log', 10, { process: 'gpg', encrypted: true });
    expect(rules.classify(data(gpg))).toBe(3); // rule 0 before the log rule
    expect(rules.classify(data(fileFacts('/var/log/x.log', 10, { process: 'gpg' })))).toBe(1);
    expect(rules.classify(data(fileFacts('/var/log/syslog.1', 10)))).toBe(1);
    expect(rules.classify(data(fileFacts('/var/logs/syslog.1', 10)))).toBe(0); // /var/logs is not below /var/log
    expect(rules.classify(data(fileFacts('/home/a.mp4', 10)))).toBe(2);
    expect(rules.classify(data(fileFacts('/srv/media/raw', 10), { requestBytes: 65536 }))).toBe(2);
    expect(rules.classify(data(fileFacts('/srv/media/raw', 10), { requestBytes: 65536, direction: 'write' }))).toBe(0);
    expect(rules.classify(data(fileFacts('/srv/media/raw', 10), { requestBytes: 4096 }))).toBe(0);
    expect(rules.classify(data(fileFacts('/tmp/s', 100, { pid: 1500 })))).toBe(4);
    expect(rules.classify(data(fileFacts('/tmp/s', 100, { pid: 2000 })))).toBe(0); // range is half-open
    expect(rules.classify(data(fileFacts('/tmp/s', 0, { pid: 1500 })))).toBe(0);
    expect(rules.classify(data(fileFacts('/tmp/s', 100, { appClass: 2 })))).toBe(2);
    expect(rules.classify(data(fileFacts('/tmp/s', 100, { appClass: 2 }), { sector: 1_000_000 }))).toBe(0); // lba rule first
    expect(rules.classify(metadata)).toBe(5);
    expect(rules.classify({ ...metadata, sector: 2_000_000 })).toBe(5);
    expect(rules.fileOnly).toBe(false);
    expect(rules.classById(3)).toEqual({ id: 3, name: 'keys', evictionPriority: 0, pinned: true, allocation: 1 });
  });

  it('round-trip through YAML', () => {
    const again = parseIoClassRulesYaml(formatIoClassRulesYaml(rules.spec), 'again');
    expect(again.spec).toEqual(rules.spec);
  });

  it('report errors by key path, naming the rule index', () => {
    const cases: [string, string][] = [
      [CUSTOM.replace('"<16K"', '"<<16K"'), 'rules.4.when.file_size: not a comparison: "<<16K" (expected e.g. "<1M", ">=10M", "4096", "1M..2M")'],
      [CUSTOM.replace('- class: 4', '- class: 9'), 'rules.4.class: class 9 is not defined'],
      [CUSTOM.replace('{ id: 4, name: small', '{ id: 2, name: small'), 'classes.4.id: duplicate class id 2'],
      [CUSTOM.replace('io_direction: read', 'io_direction: sideways'), 'rules.3.any.1.io_direction: Invalid option: expected one of "read"|"write"'],
      [CUSTOM.replace('pattern: encrypted', 'colour: red'), 'rules.0.when: Unrecognized key: "colour"'],
      [CUSTOM.replace('allocation: 0.5', 'allocation: 1.5'), 'classes.2.allocation: allocation is a share of the cache, 0..1'],
      [CUSTOM.replace('/srv/media', 'srv/media'), 'rules.3.any.1.directory: directory "srv/media" must be an absolute path'],
      [CUSTOM.replace('default_class: 0', 'default_class: 7'), 'default_class: class 7 is not defined'],
    ];
    for (const [text, message] of cases) {
      expect(() => parseIoClassRulesYaml(text, 'custom.yaml')).toThrow(`invalid ioclass rules in custom.yaml:\n  ${message}`);
    }
    expect(() => parseIoClassRulesYaml('rules: [', 'bad.yaml')).toThrow(/^bad\.yaml is not valid YAML/);
  });
});

/** Open CAS Linux's example, utils/ioclass-config.csv (github.com/Open-CAS/open-cas-linux), verbatim. */
const OPEN_CAS_EXAMPLE = `IO class id,IO class name,Eviction priority,Allocation
0,unclassified,22,1
1,metadata&done,0,1
11,file_size:le:4096&done,9,1
12,file_size:le:16384&done,10,1
13,file_size:le:65536&done,11,1
14,file_size:le:262144&done,12,1
15,file_size:le:1048576&done,13,1
16,file_size:le:4194304&done,14,1
17,file_size:le:16777216&done,15,1
18,file_size:le:67108864&done,16,1
19,file_size:le:268435456&done,17,1
20,file_size:le:1073741824&done,18,1
21,file_size:gt:1073741824&done,19,1
22,direct&done,20,1
33,prefetch,21,1
`;

describe('Open CAS ioclass CSV import', () => {
  it('imports the Open CAS example file', () => {
    const { rules, warnings } = importOpenCasCsv(OPEN_CAS_EXAMPLE, 'ioclass-config.csv');
    expect(warnings).toEqual(['line 15 (IO class 22): Sky cannot see direct; groups using it never match']);
    expect(rules.defaultClass).toBe(0);
    expect(rules.classes.map((c) => [c.id, c.name, c.evictionPriority, c.pinned, c.allocation])).toEqual([
      [0, 'unclassified', 22, false, 1],
      [1, 'metadata&done', 0, false, 1],
      [11, 'file_size:le:4096&done', 9, false, 1],
      [12, 'file_size:le:16384&done', 10, false, 1],
      [13, 'file_size:le:65536&done', 11, false, 1],
      [14, 'file_size:le:262144&done', 12, false, 1],
      [15, 'file_size:le:1048576&done', 13, false, 1],
      [16, 'file_size:le:4194304&done', 14, false, 1],
      [17, 'file_size:le:16777216&done', 15, false, 1],
      [18, 'file_size:le:67108864&done', 16, false, 1],
      [19, 'file_size:le:268435456&done', 17, false, 1],
      [20, 'file_size:le:1073741824&done', 18, false, 1],
      [21, 'file_size:gt:1073741824&done', 19, false, 1],
      [22, 'direct&done', 20, false, 1],
      [33, 'prefetch', 21, false, 1],
    ]);
    expect(rules.spec.rules.map((r) => [r.class, r.when])).toEqual([
      ['app', { app_class: 'any' }],
      [1, { metadata: true }],
      [11, { file_size: [{ op: '<=', value: 4096 }] }],
      [12, { file_size: [{ op: '<=', value: 16384 }] }],
      [13, { file_size: [{ op: '<=', value: 65536 }] }],
      [14, { file_size: [{ op: '<=', value: 262144 }] }],
      [15, { file_size: [{ op: '<=', value: 1048576 }] }],
      [16, { file_size: [{ op: '<=', value: 4194304 }] }],
      [17, { file_size: [{ op: '<=', value: 16777216 }] }],
      [18, { file_size: [{ op: '<=', value: 67108864 }] }],
      [19, { file_size: [{ op: '<=', value: 268435456 }] }],
      [20, { file_size: [{ op: '<=', value: 1073741824 }] }],
      [21, { file_size: [{ op: '>', value: 1073741824 }] }],
    ]);
    expect(rules.classify(metadata)).toBe(1);
    expect(rules.classify(sized(4096))).toBe(11);
    expect(rules.classify(sized(4097))).toBe(12);
    expect(rules.classify(sized(1048576))).toBe(15);
    expect(rules.classify(sized(1073741824))).toBe(20);
    expect(rules.classify(sized(1073741825))).toBe(21);
    expect(rules.classify(unknown)).toBe(0);
    expect(rules.classify(data(fileFacts('/big', 2 ** 31, { appClass: 11 })))).toBe(11);
  });

  it('keeps Open CAS semantics: `done` stops, otherwise the last match in id order wins', () => {
    const csv = [
      'IO class name,IO class id,Allocation,Eviction priority', // columns in any order
      'unclassified,0,1,22',
      'metadata&done,1,1,0',
      'extension:log,2,0.5,5',
      'file_size:gt:1000,3,1,6',
      'process_name:gpg&done,4,0.25,',
      'directory:/data|file_name_prefix:tmp&request_size:ge:65536&done,5,1,2',
      'lba:ge:100000&io_direction:write&done,6,1,3',
      'pid:4242&done,7,0,4',
    ].join('\n');
    const { rules, warnings } = importOpenCasCsv(csv, 'mine.csv');
    expect(warnings).toEqual([]);
    expect(rules.spec.rules.map((r) => r.class)).toEqual(['app', 1, 4, 5, 6, 7, 3, 2]);
    expect(rules.classById(4)).toEqual({ id: 4, name: 'process_name:gpg&done', evictionPriority: 0, pinned: true, allocation: 0.25 });
    expect(rules.classify(data(fileFacts('/x/a.log', 10)))).toBe(2);
    expect(rules.classify(data(fileFacts('/x/a.log', 2000)))).toBe(3); // both match, no done: the later one wins
    expect(rules.classify(data(fileFacts('/x/a.log', 2000, { process: 'gpg' })))).toBe(4);
    expect(rules.spec.rules[3]).toMatchObject({
      any: [
        { directory: ['/data'], request_size: [{ op: '>=', value: 65536 }] },
        { file_name_prefix: ['tmp'], request_size: [{ op: '>=', value: 65536 }] },
      ],
    });
    expect(rules.classify(data(fileFacts('/data/x', 1), { requestBytes: 65536 }))).toBe(5);
    expect(rules.classify(data(fileFacts('/data/x', 1), { requestBytes: 4096 }))).toBe(0);
    expect(rules.classify(data(fileFacts('/y/tmpfile', 1), { requestBytes: 1 << 20 }))).toBe(5);
    expect(rules.classify({ ...unknown, sector: 100_000, direction: 'write' })).toBe(6);
    expect(rules.classify({ ...unknown, sector: 99_999, direction: 'write' })).toBe(0);
    expect(rules.classify(data(fileFacts('/z', 1, { pid: 4242 })))).toBe(7);
  });

  it('reports the line and the class of a bad rule', () => {
    const header = 'IO class id,IO class name,Eviction priority,Allocation\n';
    const cases: [string, string][] = [
      ['0,unclassified,22,1\n5,colour:red&done,1,1', 'x.csv: line 3: IO class 5 "colour:red&done": unknown condition "colour"'],
      ['5,io_class:3&done,1,1', 'x.csv: line 2: IO class 5 "io_class:3&done": condition "io_class" is not supported by Sky'],
      ['5,file_size:about:3&done,1,1', 'x.csv: line 2: IO class 5 "file_size:about:3&done": unknown numeric operator "about" (eq, ne, lt, gt, le, ge)'],
      ['5,done&metadata,1,1', 'x.csv: line 2: IO class 5 "done&metadata": "done" must be the last condition'],
      ['5,metadata|done,1,1', 'x.csv: line 2: IO class 5 "metadata|done": "done" must be joined with "&"'],
      ['5,metadata,1,2', 'x.csv: line 2: allocation "2" must be a number 0.00..1.00'],
      ['5,metadata,256,1', 'x.csv: line 2: eviction priority "256" must be 0..255 (empty = pinned)'],
      ['5,metadata,1,1\n5,metadata,1,1', 'x.csv: line 3: double configuration for IO class id 5'],
      ['0,everything,1,1', 'x.csv: line 2: IO class 0 must have the name "unclassified", not "everything"'],
      ['40,metadata,1,1', 'x.csv: line 2: IO class id 40 is above 33'],
      ['5,metadata,1', 'x.csv: line 2: expected 4 columns, found 3'],
    ];
    for (const [body, message] of cases) expect(() => importOpenCasCsv(header + body, 'x.csv')).toThrow(message);
    expect(() => importOpenCasCsv('IO class id,Name\n', 'x.csv')).toThrow('x.csv: line 1: unknown column "Name"');
    expect(() => importOpenCasCsv('IO class id,IO class name,Allocation\n', 'x.csv')).toThrow('x.csv: line 1: missing column "Eviction priority"');
  });
});
