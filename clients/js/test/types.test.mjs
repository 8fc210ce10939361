// SPDX-License-Identifier: Apache-2.0
// The type declarations (web/meshsig.d.ts) cover the API the README shows:
// test/types/usage.ts is compiled with tsc --strict (when typescript is installed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

test('meshsig.d.ts types the README\'s usage (tsc --strict)', { skip: !fs.existsSync(tsc) && 'typescript is not installed' }, () => {
  // Only a hang detector: tsc takes 5-10 s alone, much longer on a loaded CI machine
  // (js_sdk_unit's ctest timeout is 300 s).
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'test', 'types')], { encoding: 'utf8', timeout: 240000 });
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
});
