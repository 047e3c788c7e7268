import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { summarize, type ScenarioResult } from './stats.js';

const run = promisify(execFile);

/** The h2load version string, or undefined when h2load is not installed. */
export async function h2loadVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await run('h2load', ['--version']);
    return stdout.trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

/** One h2load run of gRPC unary calls: the same pre-encoded request frame on every stream. */
export interface H2loadJob {
  url: string;
  frame: Buffer;
  bearer?: string;
  requests: number;
  clients: number;
  streamsPerClient: number;
  /** Bytes of DATA a successful response carries (5-byte prefix + message), to detect gRPC errors. */
  responseDataBytes: number;
  workDir: string;
  name: string;
}

/**
 * Runs h2load and computes throughput from its own wall time and p50/p99 from its per-request
 * log. gRPC errors arrive as HTTP 200 with a grpc-status trailer, which h2load counts as success;
 * a failed call carries no DATA, so the DATA byte count must equal requests × a success's size.
 */
export async function h2load(job: H2loadJob): Promise<ScenarioResult> {
  const { latenciesMs, seconds } = await h2loadRun(job);
  return summarize(latenciesMs, seconds);
}

/** One h2load run, checked as above: every call's latency (ms) and h2load's own wall time. */
export async function h2loadRun(job: H2loadJob): Promise<{ latenciesMs: number[]; seconds: number }> {
  const body = join(job.workDir, `${job.name}.body`);
  const log = join(job.workDir, `${job.name}.log`);
  writeFileSync(body, job.frame);
  const args = [
    '-n',
    String(job.requests),
    '-c',
    String(job.clients),
    '-m',
    String(job.streamsPerClient),
    '-t',
    '1',
    '--data',
    body,
    '--log-file',
    log,
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
  ];
  if (job.bearer !== undefined) args.push('-H', `authorization: Bearer ${job.bearer}`);
  args.push(job.url);
  const { stdout } = await run('h2load', args, { maxBuffer: 16 * 1024 * 1024 });
  const finished = /finished in ([\d.]+)(s|ms|us),/.exec(stdout);
  const counts = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
    stdout,
  );
  const data = /\((\d+)\) data/.exec(stdout);
  if (!finished || !counts || !data) throw new Error(`cannot parse h2load output:\n${stdout}`);
  const succeeded = Number(counts[3]);
  if (succeeded !== job.requests)
    throw new Error(`h2load ${job.name}: ${succeeded}/${job.requests} succeeded:\n${stdout}`);
  const dataBytes = Number(data[1]);
  if (dataBytes !== job.requests * job.responseDataBytes) {
    throw new Error(
      `h2load ${job.name}: ${dataBytes} response DATA bytes, expected ${job.requests} × ${job.responseDataBytes}; some calls failed with a gRPC status`,
    );
  }
  const unit = finished[2] === 's' ? 1 : finished[2] === 'ms' ? 1e-3 : 1e-6;
  const seconds = Number(finished[1]) * unit;
  const latenciesMs = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const cols = l.split('\t');
      if (cols[1] !== '200') throw new Error(`h2load ${job.name}: HTTP status ${cols[1]}`);
      return Number(cols[2]) / 1000;
    });
  return { latenciesMs, seconds };
}
