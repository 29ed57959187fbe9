/**
 * Attaches an NBD export as a block device without the kernel nbd module: nbdfuse exposes the export as a file
 * in a FUSE mount, `losetup --direct-io=on` turns that file into /dev/loopN, and a file system goes on top.
 *
 * Teardown (detach()) undoes whatever part of that was set up, in reverse order, and tolerates partial setup:
 * umount (lazy as a last resort), losetup -d, fusermount3 -u, then nbdfuse must exit (killed by pid if it does
 * not). Every attachment is recorded so detachAll() in afterAll cleans up after a failed test.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run, runOk, sleep, startTracked, stopTracked, waitUntil, isRunning, type Tracked } from './proc.js';
import { mountsUnder } from './tmp.js';

const attachments = new Set<LoopAttachment>();

export class LoopAttachment {
  readonly fuseDir: string;
  readonly imagePath: string;
  readonly mountPoint: string;
  private nbdfuse: Tracked | null = null;
  loopDevice: string | null = null;

  private constructor(readonly dir: string, readonly uri: string) {
    this.fuseDir = join(dir, 'fuse');
    this.imagePath = join(this.fuseDir, 'nbd');
    this.mountPoint = join(dir, 'fs');
  }

  /** nbdfuse + losetup. On failure, tears down what was set up and rethrows. */
  static async attach(uri: string, dir: string): Promise<LoopAttachment> {
    const attachment = new LoopAttachment(dir, uri);
    attachments.add(attachment);
    try {
      await attachment.startFuse();
      await attachment.setupLoop();
    } catch (error) {
      await attachment.detach().catch(() => undefined);
      throw error;
    }
    return attachment;
  }

  private async startFuse(): Promise<void> {
    mkdirSync(this.fuseDir, { recursive: true });
    mkdirSync(this.mountPoint, { recursive: true });
    const pidFile = join(this.dir, 'nbdfuse.pid');
    this.nbdfuse = startTracked('nbdfuse', ['-P', pidFile, this.imagePath, this.uri], { stdio: ['ignore', 'ignore', 'pipe'] }, 'nbdfuse');
    let stderr = '';
    this.nbdfuse.child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    await waitUntil(
      'nbdfuse to mount',
      () => {
        if (!isRunning(this.nbdfuse!)) throw new Error(`nbdfuse exited: ${stderr}`);
        return existsSync(pidFile) && mountsUnder(this.fuseDir).length > 0 && existsSync(this.imagePath);
      },
      20_000,
    );
  }

  private async setupLoop(): Promise<void> {
    const result = await runOk('losetup', ['--direct-io=on', '--find', '--show', this.imagePath]);
    this.loopDevice = result.stdout.trim();
    if (!this.loopDevice.startsWith('/dev/loop')) throw new Error(`losetup printed ${result.stdout}`);
  }

  get device(): string {
    if (!this.loopDevice) throw new Error('not attached');
    return this.loopDevice;
  }

  /** Whether the loop device really uses direct I/O (losetup may fall back silently). */
  async directIo(): Promise<boolean> {
    const result = await runOk('losetup', ['--list', '--noheadings', '--output', 'DIO', this.device]);
    return result.stdout.trim() === '1';
  }

  async mkfs(type: 'ext4' | 'xfs' = 'ext4'): Promise<void> {
    if (type === 'ext4') await runOk('mkfs.ext4', ['-q', '-F', this.device]);
    else await runOk('mkfs.xfs', ['-q', '-f', this.device]);
  }

  async mount(): Promise<string> {
    mkdirSync(this.mountPoint, { recursive: true });
    await runOk('mount', [this.device, this.mountPoint]);
    return this.mountPoint;
  }

  isMounted(): boolean {
    return mountsUnder(this.mountPoint).length > 0;
  }

  async unmount(): Promise<void> {
    if (!this.isMounted()) return;
    await runOk('umount', [this.mountPoint]);
  }

  /** Undoes everything that was set up; safe to call at any stage and more than once. Throws what it could not undo. */
  async detach(): Promise<void> {
    const problems: string[] = [];
    await this.unmountForTeardown(problems);
    await this.detachLoop(problems);
    await this.stopFuse(problems);
    attachments.delete(this);
    if (problems.length > 0) throw new Error(`teardown of ${this.dir}: ${problems.join('; ')}`);
  }

  private async unmountForTeardown(problems: string[]): Promise<void> {
    for (let attempt = 0; attempt < 10 && this.isMounted(); attempt++) {
      await run('umount', [this.mountPoint]);
      if (this.isMounted()) await sleep(200);
    }
    if (this.isMounted()) {
      await run('umount', ['-l', this.mountPoint]);
      problems.push(`${this.mountPoint} needed a lazy umount`);
    }
  }

  private async detachLoop(problems: string[]): Promise<void> {
    if (!this.loopDevice) return;
    for (let attempt = 0; attempt < 10; attempt++) {
      const result = await run('losetup', ['-d', this.loopDevice]);
      if (result.code === 0 || !(await loopBacking(this.loopDevice))) {
        this.loopDevice = null;
        break;
      }
      await sleep(200);
    }
    // losetup -d only sets autoclear while the device is busy: wait until the backing file is really let go.
    const device = this.loopDevice;
    if (device) problems.push(`could not detach ${device}`);
    await waitUntil('loop devices to release the nbdfuse file', async () => !(await anyLoopOn(this.imagePath)), 10_000, 100).catch(() =>
      problems.push(`a loop device still uses ${this.imagePath}`),
    );
  }

  private async stopFuse(problems: string[]): Promise<void> {
    for (let attempt = 0; attempt < 10 && mountsUnder(this.fuseDir).length > 0; attempt++) {
      await run('fusermount3', ['-u', this.fuseDir]);
      if (mountsUnder(this.fuseDir).length > 0) await sleep(200);
    }
    if (mountsUnder(this.fuseDir).length > 0) {
      await run('fusermount3', ['-u', '-z', this.fuseDir]);
      problems.push(`${this.fuseDir} needed a lazy fusermount3 -u`);
    }
    if (this.nbdfuse) {
      const stopped = await stopTracked(this.nbdfuse, { signal: null, grace_ms: 5_000 });
      if (stopped.forced) problems.push('nbdfuse had to be killed');
      this.nbdfuse = null;
    }
  }
}

async function loopBacking(device: string): Promise<boolean> {
  const result = await run('losetup', ['--list', '--noheadings', device]);
  return result.code === 0 && result.stdout.trim().length > 0;
}

async function anyLoopOn(path: string): Promise<boolean> {
  const result = await run('losetup', ['--associated', path]);
  return result.stdout.trim().length > 0;
}

export function attachLoop(uri: string, dir: string): Promise<LoopAttachment> {
  return LoopAttachment.attach(uri, dir);
}

/** Tears down every attachment still alive (afterAll). */
export async function detachAll(): Promise<void> {
  const errors: string[] = [];
  for (const attachment of [...attachments]) {
    try {
      await attachment.detach();
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  if (errors.length > 0) throw new Error(errors.join('\n'));
}
