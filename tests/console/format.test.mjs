// The console's pure helpers (crates/api/console/js/format.js), without a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cut, duration, list, parseDuration } from '../../crates/api/console/js/format.js';

test('durations read as people say them', () => {
  assert.equal(duration('850'), '850 µs');
  assert.equal(duration(12_345), '12 ms');
  assert.equal(duration(7_350_000), '7.3 s');
  assert.equal(duration(42_000_000), '42 s');
  assert.equal(duration(125_000_000), '2 m 05 s');
  assert.equal(duration(3600e6 * 3 + 7 * 60e6), '3 h 07 m');
  assert.equal(duration(86400e6 * 2 + 4 * 3600e6), '2 d 04 h');
  assert.equal(duration('not a number'), 'not a number');
});

test('duration filters parse or are refused', () => {
  assert.equal(parseDuration(''), null);
  assert.equal(parseDuration('30'), 30_000_000);
  assert.equal(parseDuration('30s'), 30_000_000);
  assert.equal(parseDuration('250ms'), 250_000);
  assert.equal(parseDuration('2m'), 120_000_000);
  assert.equal(parseDuration('1.5h'), 5_400_000_000);
  assert.equal(parseDuration('100us'), 100);
  for (const bad of ['-1s', '3 days', 's', '1e3', '10 parsecs']) assert.throws(() => parseDuration(bad), /duration/, bad);
});

test('lists and cuts', () => {
  assert.equal(list(['query', 'command']), 'query, command');
  assert.equal(list('query,command'), 'query,command');
  assert.equal(list(undefined), '');
  assert.equal(cut('abcdef', 4), 'abc…');
  assert.equal(cut('abc', 4), 'abc');
});
