/** `kiln serve`: expose a store (and later a builder) over gRPC. */
import { type Command, expectPositionals, STORE_HELP, STORE_OPTION, stringOption, UsageError } from '../command.js';
import { openStore } from '../store.js';

export const serve: Command = {
  path: ['serve'],
  summary: 'serve the castore over gRPC (snix.castore.v1)',
  help: `usage: kiln serve --listen unix:///path.sock|HOST:PORT [--store URL]

Serves snix.castore.v1.BlobService and snix.castore.v1.DirectoryService for
the store on one listener until SIGINT/SIGTERM. Prints the bound address
(useful with port 0) on stdout once listening.

options:
  --listen ADDR unix:///absolute/path.sock, or HOST:PORT (e.g. 127.0.0.1:0)
${STORE_HELP}`,
  options: { ...STORE_OPTION, listen: { type: 'string' } },
  async run(args, io) {
    expectPositionals(this, args, []);
    const listen = stringOption(args, 'listen');
    if (!listen) throw new UsageError('missing --listen unix:///path.sock|HOST:PORT');
    const store = await openStore(args, io.env);
    try {
      const { startCastoreServer } = await import('../../castore/grpc/index.js');
      const server = await startCastoreServer({ listen, blobService: store.blobService, directoryService: store.directoryService });
      io.stdout.write(`listening on ${server.address}\n`);
      await new Promise<void>((resolve) => {
        if (io.signal.aborted) resolve();
        io.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await server.close();
      return 0;
    } finally {
      await store.close();
    }
  },
};
