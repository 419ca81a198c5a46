import { constants, openSync, readlinkSync, writeSync } from "node:fs";
import type pino from "pino";

/**
 * Writes what it can of `bytes` to the output without waiting and returns
 * how many it took; throws `EAGAIN` when the output takes nothing now (a
 * full pipe). `fs.writeSync` on a non-blocking descriptor.
 */
export type WriteNow = (bytes: Uint8Array) => number;

/** How {@link GatheredLogLines} gathers, holds and, on exit, writes. */
export interface GatheredLogLinesOptions {
  /** Characters gathered before a block is written. */
  readonly blockLength: number;
  /** The longest a line waits at low traffic, in milliseconds. */
  readonly everyMs: number;
  /**
   * Characters held while the output takes nothing (stdout's reader stopped
   * reading); past it, lines are dropped and counted.
   */
  readonly backlogLength: number;
  /** On exit, how long to keep trying to write what is held to an output that takes nothing. */
  readonly exitWaitMs: number;
}

/**
 * Log lines gathered in memory and written a block at a time: once
 * {@link GatheredLogLinesOptions.blockLength} characters are waiting, at
 * least every `everyMs` milliseconds, and what is held when the process
 * exits (a crash included: Node runs `exit` listeners then).
 *
 * Written with `fs.writeSync` on standard output opened non-blocking (see
 * {@link gatheredStandardOutput}): a write takes what the pipe has room for
 * and returns at once; what it did not take waits, and is tried again every
 * {@link RETRY_MS} ms. So the event loop never waits on a reader of stdout,
 * and what is held is always known exactly — which the exit needs: it
 * writes the rest itself.
 *
 * Why not pino's asynchronous destination (sonic-boom), which gathers too:
 * - its `minLength` measures what it holds with `Buffer.byteLength` on every
 *   line, which makes V8 copy the growing text into one flat string each
 *   time (up to 16 KiB per line), and each write goes through libuv's
 *   thread pool at a fixed cost. A loop of 200,000 access lines to stdout
 *   (`process.cpuUsage`, Node.js 24) cost ~8 µs of CPU per line through
 *   `minLength: 4096`; see the README for this writer's figure;
 * - a reader that stops reading (a full pipe) made it hold every line in
 *   memory, without bound, and on exit it retries such a pipe forever: the
 *   process never exited. Here what waits is bounded (`backlogLength`;
 *   past it lines are dropped, and a warning line says how many once
 *   writing resumes), and the exit gives up after `exitWaitMs`;
 * - an asynchronous write in flight when the process exits may or may not
 *   have been written: the exit could only lose it or write it twice.
 */
export class GatheredLogLines implements pino.DestinationStream {
  #lines: string[] = [];
  #length = 0;
  /** Blocks waiting for the output, and their total length. */
  #blocks: string[] = [];
  #held = 0;
  /** What the output has not taken of the block being written. */
  #rest: Uint8Array | undefined = undefined;
  #retry: NodeJS.Timeout | undefined = undefined;
  #dropped = 0;
  /** The output failed (EPIPE: nobody will read it again; or another error): lines are dropped from then on. */
  #broken = false;
  #flushed: (() => void)[] = [];

  constructor(
    private readonly writeNow: WriteNow,
    private readonly options: GatheredLogLinesOptions,
  ) {
    setInterval(() => this.#handOver(), options.everyMs).unref();
    onProcessEnd(this);
  }

  write(line: string): void {
    if (this.#broken) return;
    this.#lines.push(line);
    this.#length += line.length;
    if (this.#length >= this.options.blockLength) this.#handOver();
  }

  /** Writes what is gathered now; `callback` once the output took all of it (pino's `logger.flush`). */
  flush(callback?: (error?: Error) => void): void {
    if (callback !== undefined) {
      if (this.#broken) return callback();
      this.#flushed.push(callback);
    }
    this.#handOver();
  }

  /**
   * Writes everything held, waiting for an output that takes nothing
   * (`EAGAIN`, a full pipe) at most `exitWaitMs`, then drops the rest. For
   * the process's exit.
   */
  flushSync(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    if (this.#broken) return;
    // The lines dropped came after the blocks held, and before the lines gathered since.
    const text = Buffer.from(this.#blocks.join("") + this.#droppedWarning() + this.#lines.join(""));
    const rest = this.#rest;
    this.#blocks = [];
    this.#held = 0;
    this.#lines = [];
    this.#length = 0;
    this.#rest = undefined;
    writeOnExit(this.writeNow, rest, text, this.options.exitWaitMs);
  }

  #handOver(): void {
    const lines = this.#lines;
    if (lines.length > 0) {
      this.#lines = [];
      this.#length = 0;
      const block = lines.length === 1 ? (lines[0] as string) : lines.join("");
      // Once dropping, drop until the warning is out: the lines kept and the
      // warning stay in the order things happened.
      if (this.#dropped > 0 || this.#held + block.length > this.options.backlogLength) this.#dropped += lines.length;
      else {
        this.#blocks.push(block);
        this.#held += block.length;
      }
    }
    // Even while a retry is due: a full pipe may have room again, and waiting
    // for the timer alone would cap the rate at a pipe's worth per retry.
    this.#write();
  }

  // Writes what waits until the output takes no more; then tries again later.
  #write(): void {
    for (;;) {
      if (this.#broken) return;
      if (this.#rest === undefined) {
        if (this.#blocks.length === 0 && this.#dropped === 0) {
          for (const callback of this.#flushed.splice(0)) callback();
          return;
        }
        // Lines are dropped only while blocks are held: the warning follows them.
        const text = (this.#blocks.length === 1 ? (this.#blocks[0] as string) : this.#blocks.join("")) + this.#droppedWarning();
        this.#rest = Buffer.from(text);
        this.#blocks = [];
      }
      let taken: number;
      try {
        taken = this.writeNow(this.#rest);
      } catch (error) {
        if (isFull(error)) return this.#retryLater();
        this.#break(error);
        return;
      }
      if (taken >= this.#rest.length) {
        this.#rest = undefined;
        this.#held = 0;
        for (const block of this.#blocks) this.#held += block.length;
      } else {
        this.#rest = this.#rest.subarray(taken);
        return this.#retryLater();
      }
    }
  }

  #retryLater(): void {
    if (this.#retry !== undefined) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.#write();
    }, RETRY_MS).unref();
  }

  // EPIPE (stdout's reader is gone for good) or another failure: drop what is held and all that follows.
  #break(error: unknown): void {
    this.#broken = true;
    // Said once, where it may still be read: EPIPE is the reader gone (a
    // closed `| head`), anything else (ENOSPC, EIO) a log nobody will get.
    const code = (error as { code?: unknown }).code;
    if (code !== "EPIPE") {
      try {
        writeSync(2, `connect-gateway: log lines to standard output stopped: ${typeof code === "string" ? code : String(error)}\n`);
      } catch {
        // stderr is gone too
      }
    }
    this.#blocks = [];
    this.#lines = [];
    this.#rest = undefined;
    for (const callback of this.#flushed.splice(0)) callback();
  }

  // A line saying how many were dropped since the last one said so ("" if none).
  #droppedWarning(): string {
    if (this.#dropped === 0) return "";
    const line = `${JSON.stringify({ level: 40, time: Date.now(), msg: `dropped ${this.#dropped} log lines: standard output was not being read` })}\n`;
    this.#dropped = 0;
    return line;
  }
}

/**
 * What is gathered is handed over when the event loop empties and written
 * when the process exits (a crash included: Node runs `exit` listeners
 * then). One pair of process listeners for every instance, placed first, so
 * that other exit hooks (pino's) find nothing left of these lines.
 */
function onProcessEnd(lines: GatheredLogLines): void {
  if (instances.size === 0) {
    process.prependListener("beforeExit", () => {
      for (const each of instances) each.flush();
    });
    process.prependListener("exit", () => {
      for (const each of instances) each.flushSync();
    });
  }
  instances.add(lines);
}

const instances = new Set<GatheredLogLines>();

/** How often what the output did not take is tried again, in milliseconds. */
const RETRY_MS = 20;

function isFull(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === "EAGAIN" || code === "EBUSY";
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes, for the process's exit, the rest of the block under way, then
 * `text`, waiting for an output that takes nothing at most `waitMs` in all.
 * `text` goes in pieces that end with a line, of at most PIPE_BUF bytes
 * where its lines allow: a pipe takes such a write whole or not at all, so
 * an output given up on ends with a whole line (a line of its own longer
 * than that, or the block under way, may still be cut).
 */
function writeOnExit(writeNow: WriteNow, rest: Uint8Array | undefined, text: Buffer, waitMs: number): void {
  const giveUpAt = Date.now() + waitMs;
  if (rest !== undefined && !writeWhole(writeNow, rest, giveUpAt)) return;
  for (let at = 0; at < text.length; ) {
    let end = Math.min(text.length, at + PIPE_BUF);
    if (end < text.length) {
      const lastEnd = text.lastIndexOf(NEWLINE, end - 1);
      const nextEnd = text.indexOf(NEWLINE, end);
      end = lastEnd >= at ? lastEnd + 1 : nextEnd === -1 ? text.length : nextEnd + 1;
    }
    if (!writeWhole(writeNow, text.subarray(at, end), giveUpAt)) return;
    at = end;
  }
}

/** Writes all of `bytes`, retrying an output that takes nothing until `giveUpAt`; false when it gave up or failed. */
function writeWhole(writeNow: WriteNow, bytes: Uint8Array, giveUpAt: number): boolean {
  let rest = bytes;
  while (rest.length > 0) {
    try {
      rest = rest.subarray(writeNow(rest));
    } catch (error) {
      if (!isFull(error) || Date.now() >= giveUpAt) return false;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
  return true;
}

/** What POSIX guarantees a pipe writes whole or not at all (Linux: 4 KiB). */
const PIPE_BUF = 4096;
const NEWLINE = 0x0a;

/**
 * The gateway's standard output for log lines (see {@link GatheredLogLines}):
 * 16 KiB blocks, at least every 100 ms, at most 16 MiB held while stdout is
 * not read, at most 1 s spent on exit writing to a stdout that is not read.
 */
export function gatheredStandardOutput(options: Partial<GatheredLogLinesOptions> = {}): GatheredLogLines {
  const fd = standardOutputDescriptor();
  return new GatheredLogLines((bytes) => writeSync(fd, bytes), {
    blockLength: 16 * 1024,
    everyMs: 100,
    backlogLength: 16 * 1024 * 1024,
    exitWaitMs: 1_000,
    ...options,
  });
}

/**
 * A descriptor of standard output that never makes a write wait:
 * - a pipe or a socket: stdout itself, which Node opens non-blocking the
 *   first time `process.stdout` is read (libuv's pipe handle); a child's
 *   stdout starts out blocking, and a write to a full pipe would wait for
 *   the reader;
 * - a terminal, which Node keeps blocking (`console.log` waits for it): a
 *   non-blocking descriptor of the gateway's own on the same terminal, so
 *   that a terminal nobody reads (Ctrl-S, a frozen ssh session, `docker run
 *   -t` with a stalled log reader) holds lines, not calls. Where the
 *   terminal cannot be opened again by name (not Linux), stdout itself, as
 *   `console.log` writes it;
 * - a file: stdout itself (a file takes every write).
 */
function standardOutputDescriptor(): number {
  if (!process.stdout.isTTY) return 1;
  try {
    return openSync(readlinkSync("/proc/self/fd/1"), constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch {
    return 1;
  }
}
