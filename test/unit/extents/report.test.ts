import { describe, expect, it } from 'vitest';
import { GroundTruth } from '../../../src/insight/extents/ground-truth.js';
import { renderAccuracyReport, renderTruthSummary } from '../../../src/insight/extents/report.js';
import { scoreTags } from '../../../src/insight/extents/score.js';
import { sampleParts } from './sample-truth.js';

const MiB = 1024 * 1024;

describe('report rendering', () => {
  const truth = GroundTruth.fromParts(sampleParts());

  it('summarises a ground truth', () => {
    const text = renderTruthSummary(truth);
    expect(text).toContain('ext4 at offset 1048576 of a 16.00 MiB volume; space map: fsmap');
    expect(text).toContain('files 3');
  });

  it('prints origin and class shares and the confusion matrix', () => {
    const report = scoreTags(
      [
        { offset: 2 * MiB, length: 4096, direction: 'read', tag: { origin: 'data', ioClass: 4 } },
        { offset: 5 * MiB, length: 4096, direction: 'write', tag: { origin: 'metadata', ioClass: 5 } },
        { offset: 12 * MiB, length: 4096, direction: 'write', tag: null },
      ],
      truth,
    );
    const text = renderAccuracyReport(report);
    expect(text).toContain('requests 3, 12.0 KiB; to space free at the end (not scored): 1 requests, 4.0 KiB');
    expect(text).toMatch(/^origin\s+50\.0%\s+50\.0%\s+50\.0%\s+50\.0%/m);
    expect(text).toMatch(/^true\\tag\s+4\s+5$/m);
    expect(text).toMatch(/^0\s+0\.0 KiB\s+4\.0 KiB$/m);
    expect(text).toMatch(/^4\s+4\.0 KiB\s+0\.0 KiB$/m);
  });
});
