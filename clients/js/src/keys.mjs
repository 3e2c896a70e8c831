// Keys: sr25519 pairs from a secret URI (`//Bob`, a mnemonic, `0x` seed), SS58 prefix 42,
// the format Bittensor hotkeys use.

import { Keyring } from '@polkadot/keyring';
import { cryptoWaitReady } from '@polkadot/util-crypto';

export const SS58_PREFIX = 42;

/** The sr25519 pair for `uri`; waits for the WASM crypto to be ready first. */
export async function pairFromUri(uri) {
  await cryptoWaitReady();
  return new Keyring({ type: 'sr25519', ss58Format: SS58_PREFIX }).addFromUri(uri);
}
