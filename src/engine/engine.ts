import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { createDevice, wrapTiming } from '../device/index.js';
import { HintServer, type Hint, type HintVolume } from '../hints/index.js';
import { MetricsServer } from '../metrics/index.js';
import { NbdServer, StaticExportRegistry, type NbdExport } from '../nbd/index.js';
import {
  buildStack,
  describeStack,
  passthroughFactory,
  StatsLayer,
  statsFactory,
  type BlockLayer,
  type LayerFactory,
  type LayerSpec,
} from '../volume/index.js';
import { createClassifyFactory, SemanticRegistry } from '../semantics/index.js';
import { tagLogFactory } from '../report/tag-log.js';
import { ConfigError, parseHostPort, type Config, type ExportConfig } from './config.js';

/** A served volume: its stack, and the stats layer on top of it. */
export interface Volume extends NbdExport {
  readonly stats: StatsLayer;
  readonly config: ExportConfig;
}

/** Layer types a config may name. Later parts (icache, idedup) add their factories here. */
export function defaultLayerFactories(semantics: SemanticRegistry): Map<string, LayerFactory<any>> {
  const classify = createClassifyFactory({ registry: semantics });
  return new Map<string, LayerFactory<any>>([
    [passthroughFactory.type, passthroughFactory],
    [statsFactory.type, statsFactory],
    [classify.type, classify],
    [tagLogFactory.type, tagLogFactory],
  ]);
}

/**
 * The composition root: builds each export's volume stack from config, starts the NBD listeners and metrics,
 * and shuts everything down in order (listeners, connections drained and flushed, volumes closed top-down).
 */
export class Engine {
  readonly config: Config;
  readonly volumes: Volume[] = [];
  private readonly log: Logger;
  private readonly factories: Map<string, LayerFactory<any>>;
  private nbd: NbdServer | null = null;
  private metrics: MetricsServer | null = null;
  private hints: HintServer | null = null;
  /** Each volume's semantic index (when its stack has a classify layer), fed by the hint channel. */
  readonly semantics: SemanticRegistry;
  private stopping: Promise<void> | null = null;

  constructor(config: Config, logger: Logger, semantics = new SemanticRegistry()) {
    this.config = config;
    this.log = logger;
    this.semantics = semantics;
    this.factories = defaultLayerFactories(semantics);
  }

  async start(): Promise<void> {
    mkdirSync(this.config.dataDir, { recursive: true });
    this.checkLayerTypes();
    try {
      for (const exportConfig of this.config.exports) this.volumes.push(await this.openVolume(exportConfig));
      const { socket, tcp } = this.config.listen;
      if (socket) mkdirSync(path.dirname(socket), { recursive: true });
      this.nbd = new NbdServer({
        registry: new StaticExportRegistry(this.volumes),
        logger: this.log.child({ part: 'nbd' }),
        socketPath: socket,
        tcp: tcp ? parseHostPort(tcp) : undefined,
      });
      await this.nbd.listen();
      await this.startHintChannel();
      if (this.config.metrics) {
        this.metrics = new MetricsServer(() => this.volumes.map((v) => v.stats.snapshot()), this.log.child({ part: 'metrics' }));
        await this.metrics.listen(parseHostPort(this.config.metrics.listen));
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Addresses the NBD server listens on. */
  get addresses(): string[] {
    return this.nbd?.addresses ?? [];
  }

  /** Addresses the hint channel listens on. */
  get hintAddresses(): string[] {
    return this.hints?.addresses ?? [];
  }

  get metricsAddress(): string | null {
    return this.metrics?.address ?? null;
  }

  stop(): Promise<void> {
    this.stopping ??= this.stopInOrder();
    return this.stopping;
  }

  private async stopInOrder(): Promise<void> {
    await this.nbd?.shutdown();
    await this.metrics?.close();
    await this.hints?.close();
    for (const volume of this.volumes.splice(0)) {
      try {
        await volume.layer.flush();
        await volume.layer.close();
        this.log.info({ volume: volume.name }, 'volume closed');
      } catch (err) {
        this.log.error({ err, volume: volume.name }, 'closing volume failed');
      }
    }
  }

  /** Hints reach a volume's semantic index; only exports with a token and a classify layer can receive them. */
  private async startHintChannel(): Promise<void> {
    const at = this.config.hints;
    if (!at) return;
    const volumes: HintVolume[] = [];
    for (const volume of this.volumes) {
      const token = volume.config.hintToken;
      const index = this.semantics.get(volume.name);
      if (!token) continue;
      if (!index) throw new ConfigError(`export ${volume.name} has a hintToken but no classify layer to use hints`);
      const log = this.log.child({ part: 'hints', volume: volume.name });
      volumes.push({
        name: volume.name,
        token,
        sink: {
          accept: (hint: Hint) => {
            if (hint.type === 'lost') {
              // The sender's queue overflowed while we were unreachable or slow: what those hints described stays
              // untagged or keeps older tags until new hints arrive. Say so; there is nothing to apply.
              log.warn({ count: (hint as { count?: unknown }).count }, 'the sender dropped hints (its queue was full)');
              return true;
            }
            const result = index.accept(hint);
            if (!result.ok) log.warn({ error: result.error, type: hint.type }, 'hint rejected');
            return true;
          },
          onDrain: () => undefined,
        },
      });
    }
    this.hints = new HintServer(volumes, this.log.child({ part: 'hints' }));
    await this.hints.listen({ socketPath: at.socket, tcp: at.tcp ? parseHostPort(at.tcp) : undefined });
  }

  private checkLayerTypes(): void {
    this.config.exports.forEach((e, i) =>
      e.layers.forEach((layer, j) => {
        if (!this.factories.has(layer.type)) {
          const known = [...this.factories.keys()].join(', ');
          throw new ConfigError(`exports.${i}.layers.${j}.type: unknown layer type "${layer.type}" (known: ${known})`);
        }
        const parsed = this.factories.get(layer.type)!.schema.safeParse(layer);
        if (!parsed.success) {
          const why = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
          throw new ConfigError(`exports.${i}.layers.${j}: ${why}`);
        }
      }),
    );
  }

  private async openVolume(config: ExportConfig): Promise<Volume> {
    let device: BlockLayer = createDevice(config.device);
    if (config.timing) device = wrapTiming(device, config.timing);
    const specs: LayerSpec[] = [{ type: 'stats' }, ...config.layers];
    const top = buildStack(device, specs, this.factories, { volume: config.name });
    await top.open();
    const stats = top as StatsLayer;
    const readOnly = config.readOnly || top.capabilities().readOnly;
    this.log.info({ volume: config.name, size: top.size(), readOnly, stack: describeStack(top) }, 'volume open');
    return { name: config.name, description: config.description, readOnly, layer: top, stats, config };
  }
}
