/** The one-screen summary `sky agent` and `sky run` print to stderr when the workload ends. */
import { formatBytes } from '../insight/summary.js';
import { SEMANTIC_MESSAGE_TYPES } from '../semantics/messages.js';
import type { AgentStats } from './agent.js';

export function renderAgentSummary(stats: AgentStats, extra: { delivered?: boolean; dropped?: number } = {}): string {
  const i = stats.informer;
  const sent = SEMANTIC_MESSAGE_TYPES.filter((t) => i.messages[t] > 0).map((t) => `${t} ${i.messages[t]}`);
  const total = SEMANTIC_MESSAGE_TYPES.reduce((n, t) => n + i.messages[t], 0);
  const seconds = i.readbackMs / 1000;
  const rate = seconds > 0 ? `${formatBytes(i.bytesFingerprinted / seconds)}/s` : '-';
  const lines = [
    `traced with ${stats.backend}: ${stats.events} events${stats.lostEvents > 0 ? `, ${stats.lostEvents} LOST` : ''}`,
    `messages sent: ${total}${sent.length > 0 ? ` (${sent.join(', ')})` : ''}`,
    `files on the volume: ${i.files}; elsewhere (ignored): ${i.skippedFiles}; file systems on the volume: ${i.devices.onVolume}, elsewhere: ${i.devices.elsewhere}`,
    `fingerprinted: ${formatBytes(i.bytesFingerprinted)} in ${i.blocksFingerprinted} blocks (${i.zeroBlocks} zero blocks not sent), ${i.readbacks} readbacks, ${rate}${i.bytesSyncedRead + i.bytesSyncedUnread > 0 ? `; synced before read: ${formatBytes(i.bytesSyncedRead)} read in the background, ${formatBytes(i.bytesSyncedUnread)} not` : ''}`,
    `extent maps: ${i.maps} (${i.mapsSettled} found the file wholly placed${i.readbacksMapped > 0 ? `; ${i.readbacksMapped} written files mapped instead of read back` : ''})${i.dataRegionBytes > 0 ? `; file data only in ${formatBytes(i.dataRegionBytes)} of the volume (btrfs data block groups)` : ''}`,
    ...(stats.backend === 'replay' || stats.lag.count === 0 ? [] : [lagLine(stats.lag)]),
    `vanished before reading: ${i.vanished} (${i.foundRenamed} found again renamed); unidentified: ${i.unidentified}; errors: ${i.errors}${i.lastError ? ` (last: ${i.lastError})` : ''}`,
  ];
  if (i.prefetch && i.prefetch.walks > 0) {
    const p = i.prefetch;
    lines.push(`extent read-ahead: ${p.walks} walks, ${p.directories} directories, ${p.files} files mapped, ${p.messages} sent ahead${p.throttled > 0 ? `, throttled ${p.throttled}×` : ''}${p.thread ? ' (in its own thread)' : ''}`);
  }
  if (i.extentsTruncated > 0 || i.refreshesDropped > 0 || i.sinkErrors > 0) {
    lines.push(`bounded: ${i.extentsTruncated} extent lists cut, ${i.refreshesDropped} refreshes dropped, ${i.sinkErrors} messages refused by the sink`);
  }
  if (extra.dropped !== undefined || extra.delivered !== undefined) {
    lines.push(`hint channel: ${extra.delivered === false ? 'NOT all delivered' : 'delivered'}${extra.dropped ? `, ${extra.dropped} dropped (queue full)` : ''}`);
  }
  return lines.join('\n');
}

/** Buckets are powers of two: a quantile is an upper bound within 2×, so it is shown as "≤". */
function lagLine(lag: AgentStats['lag']): string {
  const ms = (value: number) => (value >= 1000 ? `${(value / 1000).toFixed(1)} s` : value >= 10 ? `${value.toFixed(0)} ms` : `${value.toFixed(1)} ms`);
  return `lag from system call to agent: median ≤${ms(lag.p50Ms)}, p90 ≤${ms(lag.p90Ms)}, p99 ≤${ms(lag.p99Ms)}, max ${ms(lag.maxMs)}`;
}
