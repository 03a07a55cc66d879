/**
 * Decides whether a series of heap samples shows sustained growth (a leak) rather than the sawtooth of
 * a healthy garbage-collected heap. Only the floor matters: the minimum of each window approximates the
 * live set after a collection, and a least-squares slope over those minima is the growth rate.
 */
export interface Sample {
  /** Seconds since the start of the run. */
  t: number;
  bytes: number;
}

export interface TrendVerdict {
  growing: boolean;
  /** Bytes per second of the floor's growth. */
  slope: number;
  /** Floor at the end minus floor at the start (after warm-up), bytes. */
  growth: number;
  windows: number;
}

export function analyseHeap(
  samples: Sample[],
  opts: { warmupS: number; windowS: number; maxSlope: number; maxGrowth: number },
): TrendVerdict {
  const kept = samples.filter((s) => s.t >= opts.warmupS);
  const floors: Sample[] = [];
  for (let start = opts.warmupS; ; start += opts.windowS) {
    const w = kept.filter((s) => s.t >= start && s.t < start + opts.windowS);
    if (w.length === 0) break;
    floors.push({ t: start + opts.windowS / 2, bytes: Math.min(...w.map((s) => s.bytes)) });
  }
  if (floors.length < 3) return { growing: false, slope: 0, growth: 0, windows: floors.length };
  const n = floors.length;
  const mt = floors.reduce((a, s) => a + s.t, 0) / n;
  const mb = floors.reduce((a, s) => a + s.bytes, 0) / n;
  const cov = floors.reduce((a, s) => a + (s.t - mt) * (s.bytes - mb), 0);
  const vt = floors.reduce((a, s) => a + (s.t - mt) ** 2, 0);
  const slope = cov / vt;
  const third = Math.max(1, Math.floor(n / 3));
  const head = Math.min(...floors.slice(0, third).map((s) => s.bytes));
  const tail = Math.min(...floors.slice(-third).map((s) => s.bytes));
  const growth = tail - head;
  return { growing: slope > opts.maxSlope && growth > opts.maxGrowth, slope, growth, windows: n };
}
