export { createReferenceBackend, type RefStorage } from './reference-backend.js';
