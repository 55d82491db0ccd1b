// 16-bit PCM WAV in the browser: a recording (any format MediaRecorder makes, decoded by WebAudio)
// becomes mono WAV at 16 kHz, which every audio model here reads; raw PCM from the server becomes
// a WAV a <audio> element plays.

/** The WAV file of mono samples in [-1, 1] (float) or int16, at `sampleRate`. */
export function encodeWav(samples, sampleRate) {
  const n = samples.length;
  const buffer = new ArrayBuffer(44 + n * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => {
    for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i));
  };
  text(0, "RIFF");
  view.setUint32(4, 36 + n * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, n * 2, true);
  if (samples instanceof Int16Array) {
    new Int16Array(buffer, 44, n).set(samples);
  } else {
    for (let i = 0; i < n; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return new Uint8Array(buffer);
}

/** An AudioBuffer mixed down to mono. */
export function monoSamples(audio) {
  const out = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const data = audio.getChannelData(c);
    for (let i = 0; i < out.length; i++) out[i] += data[i] / audio.numberOfChannels;
  }
  return out;
}

export const RECORDING_RATE = 16000;

/** A recorded blob (webm/ogg from MediaRecorder) → 16 kHz mono WAV bytes and its length in seconds. */
export async function recordingToWav(blob) {
  const bytes = await blob.arrayBuffer();
  // An OfflineAudioContext decodes and resamples to its own rate in one step.
  const context = new OfflineAudioContext(1, 1, RECORDING_RATE);
  const audio = await context.decodeAudioData(bytes);
  const samples = monoSamples(audio);
  return { wav: encodeWav(samples, RECORDING_RATE), seconds: samples.length / RECORDING_RATE };
}

/** The microphone, recorded until `stop()` is called; resolves to the recording as WAV. */
export async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.addEventListener("dataavailable", (e) => {
    if (e.data.size > 0) chunks.push(e.data);
  });
  const stopped = new Promise((resolve, reject) => {
    recorder.addEventListener("stop", () => {
      for (const track of stream.getTracks()) track.stop();
      recordingToWav(new Blob(chunks, { type: recorder.mimeType })).then(resolve, reject);
    });
    recorder.addEventListener("error", (e) => reject(e.error ?? new Error("recording failed")));
  });
  recorder.start(250);
  return {
    stop() {
      if (recorder.state !== "inactive") recorder.stop();
      return stopped;
    },
  };
}

/** Bytes as base64 (for input_audio parts and data URLs), in slices that stay under the argument limit. */
export function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
