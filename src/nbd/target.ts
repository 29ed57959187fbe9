import type { BlockLayer } from '../volume/types.js';

/** What the NBD server serves: a named top-of-stack layer. The server knows nothing else about volumes. */
export interface NbdExport {
  readonly name: string;
  readonly description: string;
  readonly readOnly: boolean;
  /** Top of the export's volume stack, already opened. Shared by every connection to the export. */
  readonly layer: BlockLayer;
}

export interface ExportRegistry {
  list(): readonly NbdExport[];
  /** The export for a client-supplied name; the empty name means the default export. */
  find(name: string): NbdExport | undefined;
}

export class StaticExportRegistry implements ExportRegistry {
  private readonly exports: readonly NbdExport[];
  private readonly byName: Map<string, NbdExport>;

  constructor(exports: readonly NbdExport[]) {
    this.exports = exports;
    this.byName = new Map(exports.map((e) => [e.name, e]));
  }
  list(): readonly NbdExport[] {
    return this.exports;
  }
  find(name: string): NbdExport | undefined {
    if (name === '') return this.exports[0];
    return this.byName.get(name);
  }
}
