export * from './manifest.js';
export * from './keys.js';
export * from './stream.js';
export * from './build.js';
