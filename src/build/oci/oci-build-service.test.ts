import { ociContainers, ociSkipReason, sandboxConformance } from '../testing/index.js';
import { OciBuildService } from './oci-build-service.js';

for (const runtime of ['runc', 'crun'] as const) {
  sandboxConformance(`oci(${runtime})`, {
    create: (options) => new OciBuildService({ ...options, runtime }),
    listContainers: (dir) => ociContainers(runtime, dir),
    ...(ociSkipReason(runtime) ? { skip: ociSkipReason(runtime) } : {}),
  });
}
