export * from '../../cluster/test/builders.js';
