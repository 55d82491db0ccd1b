/**
 * `calibration.json`: the abstention threshold calibrated on an index's own passages
 * (pipelines/calibrate-min-score.ts), kept beside the index as a sidecar rather than in the
 * manifest, so that
 *  - calibrating needs no writer lock and makes no commit (the index, its generation and every
 *    file the manifest lists stay as they are: readers and writers never look at the sidecar);
 *  - an index without one (every index made before calibration existed) opens and works as
 *    before: `ask` then uses its default threshold.
 * The file is replaced atomically (temporary file, fsync, rename, fsync of the folder), as the
 * manifest is, in the same envelope `{ format, version, crc32, body }`: a torn or damaged file is
 * told apart from an absent one.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { isObject } from "../../text-core/config-fields.ts";
import { LfmError } from "../../text-core/errors.ts";
import { crc32, replaceAtomically } from "./durable-fs.ts";
import type { ModelIdentity } from "./format.ts";

export const CALIBRATION_FILE = "calibration.json";
const CALIBRATION_FORMAT = "lfm2-edge/colbert-index-calibration";
const CALIBRATION_VERSION = 1;

/** Calibration settings (pipelines/calibrate-min-score.ts; here so the CLI's help needs no model code). */
export const DEFAULT_CALIBRATION_PROBES = 200;
export const DEFAULT_KEEP_ANSWERABLE = 0.95;
export const DEFAULT_CALIBRATION_SEED = 1;
/** Probes of each kind: enough for a 5% quantile to mean something, few enough to encode quickly. */
export const CALIBRATION_PROBES_RANGE = { min: 20, max: 10_000 } as const;

/** Quantiles of one probe set's best-passage scores (per query vector). */
export interface ScoreSummary {
  min: number;
  p05: number;
  median: number;
  p95: number;
  max: number;
}

/** What `lfm index calibrate` found and chose (see pipelines/calibrate-min-score.ts). */
export interface MinScoreCalibration {
  /** The abstention threshold: best passage score per query vector. */
  threshold: number;
  /** The share of answerable probes the threshold had to keep (the criterion). */
  keepAnswerable: number;
  /** Shares of the probes on the right side of `threshold`. */
  answerableKept: number;
  unanswerableRejected: number;
  probes: { answerable: number; unanswerable: number };
  scores: { answerable: ScoreSummary; unanswerable: ScoreSummary };
  /** The index generation and live passages it was calibrated on (the corpus may have changed since). */
  generation: number;
  documents: number;
  /** The encoder that scored the probes (a threshold belongs to one encoder). */
  model: ModelIdentity;
  seed: number;
  calibratedAt: string;
}

/** The index's calibration, or null when it has none. A damaged file is INDEX_CORRUPT. */
export function readCalibration(dir: string): MinScoreCalibration | null {
  const path = join(resolve(dir), CALIBRATION_FILE);
  if (!existsSync(path)) return null;
  const damaged = (what: string) =>
    new LfmError("INDEX_CORRUPT", `the calibration file ${path} ${what}. Calibrate again (lfm index calibrate --index ${resolve(dir)} rewrites it), or delete the file to use the default threshold.`);
  let envelope: unknown;
  try {
    envelope = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw damaged("is not valid JSON");
  }
  if (!isObject(envelope) || envelope.format !== CALIBRATION_FORMAT) throw damaged("is not an lfm2-edge calibration");
  if (typeof envelope.version !== "number" || envelope.version > CALIBRATION_VERSION) {
    throw new LfmError("INDEX_NEWER_VERSION", `the calibration file ${path} was written by a newer lfm2-edge (version ${String(envelope.version)}); upgrade lfm2-edge, or delete the file to use the default threshold.`);
  }
  if (!isObject(envelope.body) || envelope.crc32 !== crc32(Buffer.from(JSON.stringify(envelope.body)))) throw damaged("fails its checksum");
  const b = envelope.body;
  const unit = (x: unknown) => typeof x === "number" && x >= 0 && x <= 1;
  if (typeof b.threshold !== "number" || !Number.isFinite(b.threshold) || !unit(b.keepAnswerable) || !isObject(b.model) || typeof b.model.fingerprint !== "string" || typeof b.generation !== "number") {
    throw damaged("holds an invalid record");
  }
  return b as unknown as MinScoreCalibration;
}

/** Writes (or replaces) the index's calibration, crash-safely. */
export function writeCalibration(dir: string, calibration: MinScoreCalibration): void {
  const text = JSON.stringify(calibration);
  const envelope = `{"format":${JSON.stringify(CALIBRATION_FORMAT)},"version":${CALIBRATION_VERSION},"crc32":${crc32(Buffer.from(text))},"body":${text}}\n`;
  replaceAtomically(resolve(dir), CALIBRATION_FILE, Buffer.from(envelope));
}
