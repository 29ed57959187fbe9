import assert from 'node:assert/strict';

/** Time as the timing models see it; injected so that tests (and seeded simulations) control it. */
export interface Clock {
  /** Monotonic milliseconds, fractional. */
  nowMs(): number;
  /** Resolves once at least `ms` milliseconds of this clock have passed. */
  sleepMs(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  nowMs: () => performance.now(),
  sleepMs: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

interface Sleeper {
  wakeAtMs: number;
  resolve: () => void;
}

/** A clock that moves only when a test advances it; sleepers wake in time order. */
export class ManualClock implements Clock {
  private timeMs: number;
  private sleepers: Sleeper[] = [];

  constructor(startMs = 0) {
    this.timeMs = startMs;
  }

  nowMs(): number {
    return this.timeMs;
  }

  sleepMs(ms: number): Promise<void> {
    assert.ok(ms >= 0, 'negative sleep');
    return new Promise((resolve) => {
      this.sleepers.push({ wakeAtMs: this.timeMs + ms, resolve });
    });
  }

  /** Number of sleepers not yet woken. */
  pendingSleepers(): number {
    return this.sleepers.length;
  }

  /**
   * Moves time forward by `ms`, waking each sleeper at its own time and letting the woken code run (and perhaps
   * sleep again) before time moves on.
   */
  async advance(ms: number): Promise<void> {
    assert.ok(ms >= 0, 'time only moves forward');
    const targetMs = this.timeMs + ms;
    for (let sleeper = this.nextDue(targetMs); sleeper !== null; sleeper = this.nextDue(targetMs)) {
      this.timeMs = Math.max(this.timeMs, sleeper.wakeAtMs);
      sleeper.resolve();
      await settle();
    }
    this.timeMs = targetMs;
    await settle();
  }

  private nextDue(targetMs: number): Sleeper | null {
    let best = -1;
    for (let i = 0; i < this.sleepers.length; i++) {
      const wake = this.sleepers[i]!.wakeAtMs;
      if (wake <= targetMs && (best < 0 || wake < this.sleepers[best]!.wakeAtMs)) best = i;
    }
    return best < 0 ? null : this.sleepers.splice(best, 1)[0]!;
  }
}

/** Lets promise chains that were just unblocked run to their next await. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
