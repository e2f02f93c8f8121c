/** `kiln provenance cache on|off|status`: a store's result cache, opted into per store. */
import { sidecarForStore } from '../../provenance/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION, UsageError } from '../command.js';
import { EXIT_OK } from '../exit-codes.js';
import { withStore } from '../store.js';

export const provenanceCache: CommandImplementation = {
  help: `usage: kiln provenance cache on|off|status [--store URL]

The result cache, keyed by request digest, is off until turned on for a
store. While it is on, every kiln build on that store returns the recorded
result of an identical request at once when its outputs are still present
(as --cache does for one build); kiln build --rebuild bypasses it.

options:
${STORE_HELP}`,
  options: { ...STORE_OPTION },
  async run(args, io) {
    expectPositionals(this, args, ['on|off|status']);
    const action = args.positionals[0];
    if (action !== 'on' && action !== 'off' && action !== 'status') throw new UsageError(`expected on, off or status, not ${action}`);
    return withStore(args, io.env, async (store) => {
      const sidecar = sidecarForStore(store.url, store, io.env);
      if (action !== 'status') await sidecar.setResultCacheEnabled(action === 'on');
      io.stdout.write(`result cache of ${store.url}: ${(await sidecar.resultCacheEnabled()) ? 'on' : 'off'}\n`);
      return EXIT_OK;
    });
  },
};
