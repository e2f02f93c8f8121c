import { describeBlobServiceConformance } from '../testing/index.js';
import { MemoryBlobService } from './memory.js';

describeBlobServiceConformance('MemoryBlobService', { create: async () => new MemoryBlobService() });
