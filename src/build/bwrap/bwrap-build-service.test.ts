import { bwrapSkipReason, sandboxConformance } from '../testing/index.js';
import { BwrapBuildService } from './bwrap-build-service.js';

sandboxConformance('bwrap', {
  create: (options) => new BwrapBuildService(options),
  ...(bwrapSkipReason() ? { skip: bwrapSkipReason() } : {}),
});
