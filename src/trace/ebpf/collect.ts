/**
 * Collects what the BPF program stored: strings and records are read and deleted in batches, aggregates of
 * finished generations are taken one by one (the BPF side only writes the current generation, which this
 * bumps first). Everything collected at time T happened before T, so T (less a margin for a program still
 * running) is a watermark below which the time order of events is final.
 */
import assert from 'node:assert/strict';
import { monotonicNowNs, type SyscallEvent } from '../events.js';
import { BatchBuffers, BpfMap, int64At, mapIdsOf, possibleCpus } from './bpf.js';
import {
  AGGREGATE_KEY_BYTES, AGGREGATE_VALUE_BYTES, RECORD_KEY_BYTES, RECORD_VALUE_BYTES, RecordDecoder, aggregateEvent,
  stringAt, stringKey, type StringTable,
} from './decode.js';
import { STRING_BYTES } from './program.js';

const BATCH = 4096;
/** A BPF program that read the clock before we did may still be storing its record. */
const WATERMARK_MARGIN_NS = 5_000_000;

export interface CollectorHooks {
  event(event: SyscallEvent): void;
  watermark(ns: number): void;
  lost(count: number, why: string): void;
}

interface Maps {
  records: BpfMap;
  strings: BpfMap;
  aggregates: BpfMap;
  generation: BpfMap;
  attempts: BpfMap;
  /** Aggregates created (per-CPU count, incremented after the store). */
  created: BpfMap;
  misses: BpfMap;
}

/** bpftrace names map @x "AT_x" in the kernel. */
const NAMES: Record<keyof Maps, string> = {
  records: 'AT_n', strings: 'AT_p', aggregates: 'AT_r', generation: 'AT_g', attempts: 'AT_c', created: 'AT_k', misses: 'AT_x',
};

/** Our own fds to the maps bpftrace made: they keep the maps alive after bpftrace exits. */
function openMaps(bpftracePid: number): Maps {
  const found = new Map<string, BpfMap>();
  for (const id of mapIdsOf(bpftracePid)) {
    const map = BpfMap.open(id);
    if (Object.values(NAMES).includes(map.info.name) && !found.has(map.info.name)) found.set(map.info.name, map);
    else map.close();
  }
  const maps = {} as Maps;
  for (const [role, name] of Object.entries(NAMES) as [keyof Maps, string][]) {
    const map = found.get(name);
    if (!map) throw new Error(`bpftrace has no map ${name}`);
    maps[role] = map;
  }
  return maps;
}

export class Collector {
  private readonly maps: Maps;
  private readonly strings: StringTable = new Map();
  private readonly decoder = new RecordDecoder(this.strings);
  private readonly recordBatch = new BatchBuffers(RECORD_KEY_BYTES, RECORD_VALUE_BYTES, BATCH);
  private readonly stringBatch: BatchBuffers;
  private readonly aggregateBatch = new BatchBuffers(AGGREGATE_KEY_BYTES, AGGREGATE_VALUE_BYTES, BATCH);
  private readonly perCpu: Buffer;
  private readonly zeroKey = Buffer.alloc(8);
  private readonly generationValue = Buffer.alloc(8);
  private readonly takeKey = Buffer.alloc(AGGREGATE_KEY_BYTES);
  private readonly takeValue = Buffer.alloc(AGGREGATE_VALUE_BYTES);
  /** Records whose strings had not arrived: tried again next round, then counted lost. */
  private waiting: { keys: Buffer; values: Buffer }[] = [];
  private generation = 0;
  private collecting = false;
  private received = 0;
  private lostReported = 0;
  private missesReported = 0;
  /** The counts read last round, and the aggregates that round left in the map (not yet finished). */
  private lastAttempts = -1;
  private lastCreated = -1;
  private aggregatesLeft = 0;

  constructor(bpftracePid: number, private readonly hooks: CollectorHooks) {
    this.maps = openMaps(bpftracePid);
    assert.equal(this.maps.records.info.keySize, RECORD_KEY_BYTES);
    assert.equal(this.maps.records.info.valueSize, RECORD_VALUE_BYTES);
    assert.equal(this.maps.aggregates.info.keySize, AGGREGATE_KEY_BYTES);
    assert.equal(this.maps.aggregates.info.valueSize, AGGREGATE_VALUE_BYTES);
    assert.equal(this.maps.strings.info.valueSize, STRING_BYTES);
    this.stringBatch = new BatchBuffers(RECORD_KEY_BYTES, STRING_BYTES, BATCH);
    this.perCpu = Buffer.alloc(8 * possibleCpus());
  }

  /** One round; `final` when tracing ends (every generation is then taken as finished). */
  collect(final = false): void {
    assert.ok(!this.collecting, 'a collection must not start from inside another (an event hook)');
    this.collecting = true;
    try {
      this.round(final);
    } finally {
      this.collecting = false;
    }
  }

  /**
   * A batch scan walks every bucket of a map (262k by default) whether it holds anything or not: ~1.5 ms a map
   * here, several per round, 10 rounds a second for as long as tracing runs. So a map is scanned only when its
   * count moved. That skips nothing: a program bumps the count after its store, so an entry whose count we read
   * last round was stored before last round's scan, and one stored later has moved the count since.
   */
  private round(final: boolean): void {
    const now = monotonicNowNs();
    this.bumpGeneration();
    const attempts = this.sum(this.maps.attempts);
    const created = this.sum(this.maps.created);
    // A waiting record's strings may have been stored after last round's string scan: look again.
    const newRecords = final || attempts !== this.lastAttempts || this.waiting.length > 0;
    if (newRecords) this.collectStrings();
    this.retryWaiting(final);
    if (newRecords) this.collectRecords();
    for (const event of this.decoder.unpairedExecs()) this.hooks.event(event);
    if (final || created !== this.lastCreated || this.aggregatesLeft > 0) this.collectAggregates(final);
    this.lastAttempts = attempts;
    this.lastCreated = created;
    this.account(attempts, final);
    this.hooks.watermark(final ? Number.MAX_SAFE_INTEGER : now - WATERMARK_MARGIN_NS);
  }

  close(): void {
    for (const map of Object.values(this.maps)) map.close();
  }

  /**
   * The program starts generations too (at a truncation, program.ts): the next one is after whichever is later.
   * Everything counted before this call has a generation below the new one, so it is finished. (Two truncations
   * between the read and the write here would set the generation back by one; writes in that microsecond window
   * could be summed across the second truncation.)
   */
  private bumpGeneration(): void {
    if (this.maps.generation.lookup(this.zeroKey, this.generationValue)) this.generation = Math.max(this.generation, int64At(this.generationValue, 0));
    this.generation++;
    this.generationValue.writeBigInt64LE(BigInt(this.generation));
    this.maps.generation.update(this.zeroKey, this.generationValue);
  }

  /** A per-CPU count() map: the sum over CPUs. */
  private sum(map: BpfMap): number {
    if (!map.lookup(this.zeroKey, this.perCpu)) return 0;
    let total = 0;
    for (let at = 0; at < this.perCpu.length; at += 8) total += int64At(this.perCpu, at);
    return total;
  }

  private collectStrings(): void {
    this.maps.strings.scan(this.stringBatch, true, (keys, values, count) => {
      for (let i = 0; i < count; i++) {
        const k = i * RECORD_KEY_BYTES;
        const key = stringKey(int64At(keys, k), int64At(keys, k + 8), int64At(keys, k + 16));
        this.strings.set(key, stringAt(values, i * STRING_BYTES));
      }
    });
  }

  private collectRecords(): void {
    this.maps.records.scan(this.recordBatch, true, (keys, values, count) => {
      for (let i = 0; i < count; i++) this.decodeRecord(keys, i * RECORD_KEY_BYTES, values, i * RECORD_VALUE_BYTES, true);
    });
  }

  private decodeRecord(keys: Buffer, keyAt: number, values: Buffer, valueAt: number, mayWait: boolean): void {
    this.received++;
    const event = this.decoder.decode(keys, keyAt, values, valueAt);
    if (event) return this.hooks.event(event);
    if (event === null) return;
    this.received--;
    if (mayWait) {
      this.waiting.push({
        keys: Buffer.from(keys.subarray(keyAt, keyAt + RECORD_KEY_BYTES)),
        values: Buffer.from(values.subarray(valueAt, valueAt + RECORD_VALUE_BYTES)),
      });
    }
  }

  /** A record is stored after its strings, so a string read in this round can belong to a record of the last. */
  private retryWaiting(final: boolean): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const record of waiting) this.decodeRecord(record.keys, 0, record.values, 0, !final);
  }

  private collectAggregates(final: boolean): void {
    const finished: Buffer[] = [];
    let current = 0;
    this.maps.aggregates.scan(this.aggregateBatch, false, (keys, _values, count) => {
      for (let i = 0; i < count; i++) {
        const at = i * AGGREGATE_KEY_BYTES;
        if (final || int64At(keys, at + 24) < this.generation) finished.push(Buffer.from(keys.subarray(at, at + AGGREGATE_KEY_BYTES)));
        else current++;
      }
    });
    this.aggregatesLeft = current;
    for (const key of finished) {
      key.copy(this.takeKey);
      if (this.maps.aggregates.take(this.takeKey, this.takeValue)) this.hooks.event(aggregateEvent(this.takeKey, 0, this.takeValue, 0));
    }
  }

  /** Records the program tried to store but we never got: its maps were full (or their strings were). */
  private account(attempts: number, final: boolean): void {
    const missing = attempts - this.received - (final ? 0 : this.waiting.length);
    if (missing > this.lostReported) {
      this.hooks.lost(missing - this.lostReported, 'event maps full (raise ebpf.mapEntries or collect more often)');
      this.lostReported = missing;
    }
    const misses = this.sum(this.maps.misses);
    if (misses > this.missesReported) {
      this.hooks.lost(misses - this.missesReported, 'saved user registers not where expected (ebpf.kernelStackBytes)');
      this.missesReported = misses;
    }
    if (final) this.strings.clear();
  }
}
