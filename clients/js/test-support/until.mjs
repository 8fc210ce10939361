// SPDX-License-Identifier: Apache-2.0
// A bounded wait for the SDK tests: resolves once pred() holds, rejects after ms.
export function until(pred, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (pred()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error('condition not met in time'));
      setTimeout(tick, 10);
    };
    tick();
  });
}
