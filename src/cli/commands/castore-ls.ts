/** `kiln castore ls ENTRY`: list a node's tree. */
import { CastoreError, type Directory, type Node } from '../../castore/index.js';
import { type CommandImplementation, expectPositionals, STORE_HELP, STORE_OPTION } from '../command.js';
import { resolveEntry, withStore } from '../store.js';

export const castoreLs: CommandImplementation = {
  help: `usage: kiln castore ls ENTRY [--store URL]

Prints one line per node under ENTRY (Entry JSON or a blake3-… directory
digest), depth first in name order:
  d <size>        <digest>  path/
  - <bytes>       <digest>  path          (x instead of - when executable)
  l               <target>  path

options:
${STORE_HELP}`,
  options: { ...STORE_OPTION },
  async run(args, io) {
    const [entryText] = expectPositionals(this, args, ['ENTRY']) as [string];
    return withStore(args, io.env, async (store) => {
      const { name, node } = await resolveEntry(entryText, store);
      const directories = new Map<string, Directory>();
      if (node.type === 'directory') {
        for await (const d of store.directoryService.getRecursive(node.digest, { signal: io.signal })) directories.set(d.digest.toHex(), d);
        if (directories.size === 0) throw new CastoreError('NOT_FOUND', `directory ${node.digest} not found in ${store.url}`);
      }
      const lines: string[] = [];
      const visit = (path: string, n: Node) => {
        if (n.type === 'directory') {
          lines.push(`d ${String(n.size).padEnd(12)} ${n.digest}  ${path}/`);
          for (const entry of (directories.get(n.digest.toHex()) as Directory).entries) {
            visit(path === '.' ? Buffer.from(entry.name).toString() : `${path}/${Buffer.from(entry.name).toString()}`, entry.node);
          }
        } else if (n.type === 'file') {
          lines.push(`${n.executable ? 'x' : '-'} ${String(n.size).padEnd(12)} ${n.digest}  ${path}`);
        } else {
          lines.push(`l ${''.padEnd(12)} ${Buffer.from(n.target).toString()}  ${path}`);
        }
      };
      visit(name.byteLength > 0 ? Buffer.from(name).toString() : '.', node);
      io.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    });
  },
};
