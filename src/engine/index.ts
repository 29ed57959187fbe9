export { Engine, defaultLayerFactories, type Volume } from './engine.js';
export { ConfigError, ConfigSchema, defaultDataDir, loadConfigFile, parseConfig, type Config, type ExportConfig } from './config.js';
export { createLogger } from './logger.js';
