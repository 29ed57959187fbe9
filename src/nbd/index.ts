export { NbdServer, type NbdServerOptions } from './server.js';
export { StaticExportRegistry, type ExportRegistry, type NbdExport } from './target.js';
export { Limits as NbdLimits } from './constants.js';
