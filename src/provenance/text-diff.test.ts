import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shortTextDiff } from './text-diff.js';

describe('shortTextDiff', () => {
  it('shows changed lines with one line of context, and nothing for equal texts', () => {
    assert.equal(shortTextDiff('a\nb\nc\n', 'a\nb\nc\n'), '');
    assert.equal(shortTextDiff('a\nb\nc\nd\ne\n', 'a\nb\nX\nd\ne\n'), '  b\n- c\n+ X\n  d');
    assert.equal(shortTextDiff('one\n', 'one\ntwo\n'), '  one\n+ two');
    assert.equal(shortTextDiff('x', 'y'), '- x\n+ y');
  });

  it('aligns insertions and deletions, marks skipped runs and caps the output', () => {
    const before = Array.from({ length: 30 }, (_, i) => `line ${i}`).join('\n');
    const after = before.replace('line 3\n', '').replace('line 20', 'line twenty');
    assert.equal(shortTextDiff(before, after), '  line 2\n- line 3\n  line 4\n…\n  line 19\n- line 20\n+ line twenty\n  line 21');
    const many = shortTextDiff(
      Array.from({ length: 40 }, (_, i) => `a${i}`).join('\n'),
      Array.from({ length: 40 }, (_, i) => `b${i}`).join('\n'),
    );
    const lines = many.split('\n');
    assert.equal(lines.length, 13);
    assert.equal(lines.at(-1), '… (80 changed lines in all)');
  });
});
