/** `kiln key generate --out F`: an Ed25519 key pair for signing provenance. */
import { open, rm } from 'node:fs/promises';
import { generateSigningKeyPem } from '../../provenance/index.js';
import { type CommandImplementation, expectPositionals, stringOption, UsageError } from '../command.js';
import { EXIT_OK } from '../exit-codes.js';

async function writeNew(path: string, data: string, mode: number): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx', mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${path} exists; remove it or choose another --out`);
    throw error;
  }
  try {
    await handle.chmod(mode); // whatever the umask
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export const keyGenerate: CommandImplementation = {
  help: `usage: kiln key generate --out FILE

Writes a new Ed25519 key pair: FILE, the private key (PKCS#8 PEM, mode 0600),
and FILE.pub, the public key (SPKI PEM). Neither may exist yet. Prints the key
id, the hex SHA-256 of the public key's DER (SPKI) encoding, which signatures
name as their keyid.

Use the private key with kiln build --sign-key FILE, and give FILE.pub to
whoever verifies (kiln provenance verify ENVELOPE --key FILE.pub).

options:
  --out FILE    where to write the private key (the public key goes to FILE.pub)`,
  options: { out: { type: 'string' } },
  async run(args, io) {
    expectPositionals(this, args, []);
    const out = stringOption(args, 'out');
    if (!out) throw new UsageError('missing --out FILE');
    const { privateKeyPem, publicKeyPem, keyId } = generateSigningKeyPem();
    await writeNew(`${out}.pub`, publicKeyPem, 0o644);
    try {
      await writeNew(out, privateKeyPem, 0o600);
    } catch (error) {
      await rm(`${out}.pub`, { force: true });
      throw error;
    }
    io.stdout.write(`${keyId}\n`);
    io.stderr.write(`kiln: wrote the private key to ${out} (mode 0600) and the public key to ${out}.pub; key id ${keyId}\n`);
    return EXIT_OK;
  },
};
