// The URL a connection signs and opens (PROTOCOL.md §2.4); the connection itself is
// tested against the real hub by tests/test_js_client.py.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { requestTarget } from '../src/btauth.mjs';
import { streamUrl } from '../src/client.mjs';

test('streamUrl adds /ws and the resume and filter parameters', () => {
  assert.equal(streamUrl('ws://127.0.0.1:8091'), 'ws://127.0.0.1:8091/ws');
  assert.equal(streamUrl('wss://hub.example.org/bt/ws'), 'wss://hub.example.org/bt/ws');
  const url = streamUrl('ws://127.0.0.1:8091/ws', { epoch: 'f2f467fd487b430e', since: 42,
    sports: ['soccer', 'baseball'], leagues: ['La Liga'] });
  assert.equal(requestTarget(url),
    '/ws?epoch=f2f467fd487b430e&since=42&sports=soccer%2Cbaseball&leagues=La+Liga');
  // since 0 is a resume point too; an absent epoch is left out
  assert.equal(requestTarget(streamUrl('ws://h:1/ws', { since: 0 })), '/ws?since=0');
});
