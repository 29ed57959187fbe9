/**
 * src/insight/extents: where a file lives on the volume, and ground truth for measuring tag accuracy.
 * - fileExtents(path | fd): FIEMAP (filefrag fallback), with each extent's location spelled out;
 * - resolveVolume(dev) / traceVolume(dev): the explicit chain from a file system's device to the NBD export;
 * - fileVolumeExtents(path): a file's bytes as export ranges; FileSystemVolume to map many files of one mount;
 * - GroundTruth / scoreTags: the final state of a volume as an interval map, and the classification report.
 */
export { fileExtents, fileExtentReport, fiemapExtents, ExtentMapError, FS_IOC_FIEMAP } from './fiemap.js';
export type { ExtentReport, FileExtentOptions } from './fiemap.js';
export { ExtentFlag, extentLocation, flagNames } from './extent.js';
export type { ExtentLocation, FileExtent } from './extent.js';
export { parseFilefrag } from './filefrag.js';
export type { FilefragReport } from './filefrag.js';
export { resolveVolume, traceVolume, fileVolumeExtents, fileVolumeMap, FileSystemVolume, blockDeviceOf, blockDeviceBytes, mountOfPath } from './volume-map.js';
export type { VolumeResolution, VolumeTrace, VolumeLink, VolumeExtent, FileVolumeMap, DeviceLike } from './volume-map.js';
export { parseNbdUri, parseNbdfuseArgs } from './nbdfuse.js';
export type { NbdServerAddress } from './nbdfuse.js';
export { parseMountInfo } from './mountinfo.js';
export type { MountEntry } from './mountinfo.js';
export { decodeDev, formatDev, localHost } from './host.js';
export type { DeviceNumber, HostView, HostStat } from './host.js';
export { readFsmap } from './fsmap.js';
export type { FsmapRecord } from './fsmap.js';
export { logicalToDevice, parseDumpTreeChunks } from './btrfs.js';
export type { BtrfsChunk } from './btrfs.js';
export { IntervalMap } from './interval-map.js';
export { GroundTruth } from './ground-truth.js';
export type { Classification, GroundTruthJson, GroundTruthOptions, GroundTruthParts, GroundTruthStats, TruthLabel, TruthOrigin, TruthOwner } from './ground-truth.js';
export { scoreTags, scoreOne, accuracy, trueClasses, emptyReport } from './score.js';
export { renderAccuracyReport, renderTruthSummary } from './report.js';
export type { AccuracyReport, TaggedRequest, Tally, Verdicts } from './score.js';
