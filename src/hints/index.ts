export { HintServer, FrameDecoder, encodeFrame, HINT_PROTOCOL_VERSION, HINT_FRAME_BYTES_MAX, type Hint, type HintSink, type HintVolume, type Hello } from './channel.js';
export { HintClient, type HintClientOptions } from './client.js';
