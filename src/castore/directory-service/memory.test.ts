import { describeDirectoryServiceConformance } from '../testing/index.js';
import { MemoryDirectoryService } from './memory.js';

describeDirectoryServiceConformance('MemoryDirectoryService', { create: async () => new MemoryDirectoryService() });
