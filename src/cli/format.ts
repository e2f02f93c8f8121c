/** Human-readable node lines shared by the castore commands. */
import type { Node } from '../castore/index.js';

export function formatNode(node: Node): string {
  switch (node.type) {
    case 'directory':
      return `${node.digest} directory size=${node.size}`;
    case 'file':
      return `${node.digest} file size=${node.size}${node.executable ? ' executable' : ''}`;
    case 'symlink':
      return `symlink -> ${Buffer.from(node.target).toString()}`;
  }
}
