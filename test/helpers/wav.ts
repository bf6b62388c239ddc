/**
 * A mono 16-bit PCM WAV of `seconds` of a 440 Hz tone, made in the page: a real audio file that a
 * player seeks in by byte offset (`rate * 2` bytes a second after a 44-byte header).
 */
export function wav(seconds: number, rate = 22_050): File {
  const samples = seconds * rate;
  const bytes = new Uint8Array(44 + samples * 2);
  const v = new DataView(bytes.buffer);
  const text = (at: number, t: string) =>
    [...t].forEach((c, i) => v.setUint8(at + i, c.charCodeAt(0)));
  text(0, 'RIFF');
  v.setUint32(4, 36 + samples * 2, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, 1, true); // mono
  v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  text(36, 'data');
  v.setUint32(40, samples * 2, true);
  for (let i = 0; i < samples; i++)
    v.setInt16(44 + i * 2, Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), true);
  return new File([bytes], 'tone.wav', { type: 'audio/wav' });
}
