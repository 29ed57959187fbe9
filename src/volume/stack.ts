import assert from 'node:assert/strict';
import { z } from 'zod';
import { PassthroughLayer } from './passthrough.js';
import { StatsLayer } from './stats.js';
import type { BlockLayer } from './types.js';

/** Context every layer factory gets: which volume it belongs to. Later layers (classify, icache) add to this. */
export interface LayerContext {
  volume: string;
}

/** How a layer type is configured and built. A layer type registers one of these; the engine owns the registry. */
export interface LayerFactory<Options = unknown> {
  readonly type: string;
  readonly schema: z.ZodType<Options>;
  create(next: BlockLayer, options: Options, context: LayerContext): BlockLayer;
}

export const passthroughFactory: LayerFactory<{ type: 'passthrough' }> = {
  type: 'passthrough',
  schema: z.object({ type: z.literal('passthrough') }).strict(),
  create: (next) => new PassthroughLayer(next),
};

export const statsFactory: LayerFactory<{ type: 'stats' }> = {
  type: 'stats',
  schema: z.object({ type: z.literal('stats') }).strict(),
  create: (next, _options, context) => new StatsLayer(next, context.volume),
};

export interface LayerSpec {
  type: string;
  [key: string]: unknown;
}

/**
 * Builds a volume stack over `device`. `specs` are listed top-down (first = outermost), so the list reads like
 * the data path; building goes bottom-up. Options are validated by each factory's schema.
 */
export function buildStack(
  device: BlockLayer,
  specs: readonly LayerSpec[],
  factories: ReadonlyMap<string, LayerFactory<any>>,
  context: LayerContext,
): BlockLayer {
  let top = device;
  for (let i = specs.length - 1; i >= 0; i--) {
    const spec = specs[i]!;
    const factory = factories.get(spec.type);
    assert.ok(factory, `unknown layer type ${spec.type} (validated before)`);
    top = factory.create(top, factory.schema.parse(spec), context);
  }
  return top;
}

/** The layers of a stack from top to device, for logs and tests. */
export function describeStack(top: BlockLayer): string[] {
  const names: string[] = [];
  for (let layer: BlockLayer | null = top; layer; layer = layer.next) names.push(layer.name);
  return names;
}

/** Finds the first layer of a class in a stack (e.g. the StatsLayer for metrics). */
export function findLayer<T extends BlockLayer>(top: BlockLayer, kind: abstract new (...args: any[]) => T): T | undefined {
  for (let layer: BlockLayer | null = top; layer; layer = layer.next) if (layer instanceof kind) return layer;
  return undefined;
}
