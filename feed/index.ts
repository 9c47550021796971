export * from './types.js';
export * from './repository.js';
export * from './fetch.js';
export * from './client.js';
