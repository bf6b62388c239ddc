/**
 * Makes a real, seekable WebM video in the browser: frames drawn on a canvas, encoded with
 * WebCodecs (VP8), muxed with cues by webm-muxer. Each second starts with a key frame and shows
 * its number, so a test can tell where playback is.
 */
import { ArrayBufferTarget, Muxer } from 'webm-muxer';

/**
 * @param seconds length of the video
 * @param noise random pixels per frame, to make the file large (and so fetched in ranges)
 */
export async function makeWebm(seconds = 4, noise = true): Promise<Blob> {
  const width = 320;
  const height = 240;
  const fps = 25;
  const muxer = new Muxer({
    target: new ArrayBufferTarget(),
    video: { codec: 'V_VP8', width, height, frameRate: fps },
  });
  let failure: unknown;
  const encoder = new VideoEncoder({
    output: (chunk, meta) => muxer.addVideoChunk(chunk, meta),
    error: (e) => (failure = e),
  });
  encoder.configure({ codec: 'vp8', width, height, bitrate: 4_000_000, framerate: fps });
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d')!;
  const pixels = ctx.createImageData(width, height);
  for (let i = 0; i < seconds * fps; i++) {
    if (noise) {
      crypto.getRandomValues(pixels.data.subarray(0, 65536));
      ctx.putImageData(pixels, 0, 0);
    } else {
      ctx.fillStyle = `hsl(${(i * 7) % 360} 80% 50%)`;
      ctx.fillRect(0, 0, width, height);
    }
    ctx.fillStyle = 'white';
    ctx.font = '96px sans-serif';
    ctx.fillText(String(Math.floor(i / fps)), 120, 150);
    const frame = new VideoFrame(canvas, {
      timestamp: (i * 1_000_000) / fps,
      duration: 1_000_000 / fps,
    });
    encoder.encode(frame, { keyFrame: i % fps === 0 });
    frame.close();
  }
  await encoder.flush();
  encoder.close();
  if (failure) throw failure;
  muxer.finalize();
  return new Blob([muxer.target.buffer], { type: 'video/webm' });
}
