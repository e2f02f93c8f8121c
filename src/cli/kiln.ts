/**
 * The `kiln` process: runs `main` on the command line and turns signals into
 * cancellation. bin/kiln starts this file (bundled into dist/bundle/ by
 * scripts/bundle-cli.mjs, or from source through tsx).
 */
import { main } from './main.js';

// The first SIGINT/SIGTERM aborts the command, which then cleans up (a
// build's sandbox is killed and removed within about a second); later ones
// are ignored so a second Ctrl-C cannot leave a sandbox behind.
const controller = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (controller.signal.aborted) process.stderr.write(`kiln: ${sig} again: still cleaning up\n`);
    else controller.abort(new Error(`received ${sig}`));
  });
}
process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
