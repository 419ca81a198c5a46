import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { GatheredLogLines, type WriteNow } from "../../packages/gateway/src/gathered-log-lines.js";

/**
 * An output that records what it takes: everything, unless `room` says how
 * many bytes it takes now (0: none, `EAGAIN`), or `fail` is set.
 */
function output() {
  const state = { writes: [] as string[], room: Infinity, fail: undefined as string | undefined };
  const writeNow: WriteNow = (bytes) => {
    if (state.fail !== undefined) throw Object.assign(new Error(state.fail), { code: state.fail });
    if (state.room === 0) throw Object.assign(new Error("EAGAIN"), { code: "EAGAIN" });
    const taken = Math.min(bytes.length, state.room);
    state.room -= taken;
    state.writes.push(Buffer.from(bytes.subarray(0, taken)).toString());
    return taken;
  };
  return { writeNow, state };
}

const line = (i: number) => `{"level":30,"i":${i},"msg":"request completed"}\n`;
const options = { blockLength: 1024, everyMs: 60_000, backlogLength: 64 * 1024, exitWaitMs: 1_000 };
const until = async (condition: () => boolean) => {
  const deadline = Date.now() + 2_000;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
};

describe("GatheredLogLines", () => {
  it("writes lines joined, in order, once a block's worth is gathered — one write per block, not per line", () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, options);
    const written: string[] = [];
    while (state.writes.length < 10) {
      const next = line(written.length);
      const before = state.writes.length;
      lines.write(next);
      written.push(next);
      if (state.writes.length === before) continue;
      // Written just as the block reached 1,024 characters: the lines since the last block, joined.
      const block = state.writes.at(-1) as string;
      expect(block.length).toBeGreaterThanOrEqual(1024);
      expect(block.length - next.length).toBeLessThan(1024);
    }
    expect(written.length).toBeGreaterThan(10 * 20);
    expect(state.writes.join("")).toBe(written.join(""));
  });

  it("an output that takes part of a block gets the rest later, in order, never twice", async () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, options);
    state.room = 700;
    const written: string[] = [];
    for (let i = 0; i < 200; i++) {
      written.push(line(i));
      lines.write(line(i));
    }
    expect(state.writes.join("")).toBe(written.join("").slice(0, 700));
    state.room = Infinity;
    lines.flush();
    await until(() => state.writes.join("").length === written.join("").length);
    expect(state.writes.join("")).toBe(written.join(""));
  });

  it("holds at most backlogLength while the output takes nothing, then drops lines and says how many once it takes them again", async () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, { ...options, backlogLength: 4 * 1024 });
    state.room = 0;
    for (let i = 0; i < 1_000; i++) lines.write(line(i));
    lines.flush();
    expect(state.writes).toEqual([]);
    state.room = Infinity;
    let flushed = false;
    lines.flush(() => (flushed = true));
    await until(() => flushed);
    const all = state.writes.join("").split("\n").filter(Boolean);
    const warning = all.at(-1) as string;
    const kept = all.slice(0, -1);
    const dropped = 1_000 - kept.length;
    // The lines kept are the first ones, in order; the warning follows them.
    expect(kept.map((l) => `${l}\n`).join("")).toBe(Array.from({ length: kept.length }, (_, i) => line(i)).join(""));
    expect(JSON.parse(warning)).toMatchObject({ level: 40, msg: `dropped ${dropped} log lines: standard output was not being read` });
    expect(dropped).toBeGreaterThan(800);
  });

  it("after dropping, takes lines again once the output does — even when nothing but the warning was waiting", async () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, { ...options, backlogLength: 1024 });
    state.room = 0;
    for (let i = 0; i < 100; i++) lines.write(line(i));
    state.room = Infinity;
    await until(() => state.writes.join("").includes("dropped"));
    lines.write(line(1_000));
    let flushed = false;
    lines.flush(() => (flushed = true));
    await until(() => flushed);
    const all = state.writes.join("").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { i?: number; msg: string });
    const warnings = all.filter((l) => l.i === undefined);
    const dropped = warnings.reduce((n, l) => n + Number(/^dropped (\d+) log lines/.exec(l.msg)?.[1]), 0);
    const kept = all.filter((l) => l.i !== undefined && l.i < 100);
    expect(warnings.length).toBeGreaterThan(0);
    expect(kept.length + dropped).toBe(100);
    expect(all.at(-1)?.i).toBe(1_000);
  });

  it("a block handed over while a retry is due is tried at once: a pipe that has room again is not left waiting for the timer", () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, options);
    state.room = 0;
    for (let i = 0; i < 30; i++) lines.write(line(i));
    expect(state.writes).toEqual([]);
    state.room = Infinity;
    for (let i = 30; i < 60; i++) lines.write(line(i));
    expect(state.writes.join("")).toBe(Array.from({ length: 60 }, (_, i) => line(i)).join("").slice(0, state.writes.join("").length));
    expect(state.writes.join("").length).toBeGreaterThan(2 * 1024);
  });

  it("says once on stderr why it stopped when the output fails for good (not for EPIPE, a reader gone)", async () => {
    const script = `
      import { GatheredLogLines } from ${JSON.stringify(fileURLToPath(new URL("../../packages/gateway/src/gathered-log-lines.ts", import.meta.url)))};
      const code = process.argv.at(-1);
      const lines = new GatheredLogLines(() => { throw Object.assign(new Error(code), { code }); }, { blockLength: 10, everyMs: 60000, backlogLength: 1000, exitWaitMs: 10 });
      for (let i = 0; i < 5; i++) lines.write("a line that fills a block\\n");`;
    const stderrOf = async (code: string) => {
      const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, code], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      await new Promise((resolve) => child.on("close", resolve));
      return stderr;
    };
    expect(await stderrOf("ENOSPC")).toBe("connect-gateway: log lines to standard output stopped: ENOSPC\n");
    expect(await stderrOf("EPIPE")).toBe("");
  });

  it("on exit, an output given up on ends with a whole line: what was gathered goes in line-aligned pieces a pipe takes whole or not at all", () => {
    // A pipe with 10,000 bytes of room, and PIPE_BUF's rule: up to 4,096 bytes, all or nothing.
    let room = 10_000;
    const taken: string[] = [];
    const pipe: WriteNow = (bytes) => {
      const n = bytes.length <= 4096 ? (bytes.length <= room ? bytes.length : 0) : Math.min(room, bytes.length);
      if (n === 0) throw Object.assign(new Error("EAGAIN"), { code: "EAGAIN" });
      room -= n;
      taken.push(Buffer.from(bytes.subarray(0, n)).toString());
      return n;
    };
    const lines = new GatheredLogLines(pipe, { ...options, blockLength: 1_000_000, exitWaitMs: 20 });
    const all = Array.from({ length: 1_000 }, (_, i) => line(i)).join("");
    for (let i = 0; i < 1_000; i++) lines.write(line(i));
    lines.flushSync();
    const out = taken.join("");
    expect(out.length).toBeGreaterThan(5_000);
    expect(out.length).toBeLessThan(all.length);
    expect(out.endsWith("\n")).toBe(true);
    expect(all.startsWith(out)).toBe(true);
  });

  it("writes a line within the interval at low traffic", async () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, { ...options, everyMs: 20 });
    lines.write(line(1));
    expect(state.writes).toEqual([]);
    await until(() => state.writes.length > 0);
    expect(state.writes).toEqual([line(1)]);
  });

  it("flush calls back once the output took everything", async () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, options);
    state.room = 10;
    lines.write(line(1));
    let flushed = false;
    lines.flush(() => (flushed = true));
    expect(flushed).toBe(false);
    state.room = Infinity;
    await until(() => flushed);
    expect(state.writes.join("")).toBe(line(1));
  });

  it("an output that fails (EPIPE: its reader is gone) takes nothing more, and nothing throws", () => {
    const { writeNow, state } = output();
    const lines = new GatheredLogLines(writeNow, options);
    for (let i = 0; i < 100; i++) lines.write(line(i));
    const before = state.writes.length;
    state.fail = "EPIPE";
    for (let i = 0; i < 100; i++) lines.write(line(i));
    let flushed = false;
    lines.flush(() => (flushed = true));
    lines.flushSync();
    state.fail = undefined;
    lines.write(line(1));
    lines.flush();
    expect(state.writes).toHaveLength(before);
    expect(flushed).toBe(true);
  });

  describe("on stdout through pino, in a process of its own (gatheredStandardOutput)", () => {
    const dir = mkdtempSync(join(tmpdir(), "gathered-lines-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const source = fileURLToPath(new URL("../../packages/gateway/src/gathered-log-lines.ts", import.meta.url));

    /**
     * Logs `count` lines through pino into gatheredStandardOutput(`options`),
     * then leaves as `end` says. The parent starts reading its stdout after
     * `readAfterMs`; `exitedAt` is when the child exited, read or not.
     */
    async function run(count: number, end: string, { readAfterMs = 0, readAfterLogged = false, options = "{}" } = {}) {
      const script = join(dir, `log-${Math.random().toString(36).slice(2)}.mts`);
      writeFileSync(
        script,
        `import pino from ${JSON.stringify(pathToFileURL(createRequire(source).resolve("pino")).href)};\n` +
          `import { gatheredStandardOutput } from ${JSON.stringify(source)};\n` +
          `const log = pino({ base: undefined, timestamp: false }, gatheredStandardOutput(${options}));\n` +
          `for (let i = 0; i < ${count}; i++) log.info({ i }, "line");\n` +
          `process.stderr.write("logged\\n");\n` +
          `${end}\n`,
      );
      const startedAt = Date.now();
      const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stdout.pause();
      // Reading starts `readAfterMs` after the start, or after the child says it logged everything.
      let reading: NodeJS.Timeout | undefined = readAfterLogged ? undefined : setTimeout(() => child.stdout.resume(), readAfterMs);
      const ended = new Promise((resolve) => child.stdout.on("end", resolve));
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        if (readAfterLogged && reading === undefined && stderr.includes("logged\n")) reading = setTimeout(() => child.stdout.resume(), readAfterMs);
      });
      const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      let exitedAt = 0;
      const closed = new Promise((resolve) => child.on("close", resolve));
      const code = await new Promise<number | null>((resolve) => {
        child.on("exit", (c) => {
          exitedAt = Date.now() - startedAt;
          resolve(c);
        });
      });
      await closed;
      await ended;
      clearTimeout(killer);
      clearTimeout(reading);
      return { stdout, stderr, code, exitedAt };
    }

    // Whole lines only: an output given up on at exit may end in the middle of the block that was under way.
    const parsed = (stdout: string) =>
      stdout
        .slice(0, stdout.lastIndexOf("\n") + 1)
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { i?: number; msg: string });
    const indexes = (stdout: string) => parsed(stdout).flatMap((l) => (l.i === undefined ? [] : [l.i]));
    const upTo = (n: number) => Array.from({ length: n }, (_, i) => i);

    it("writes every line, in order, when the process exits by itself with lines still gathered", async () => {
      const { stdout, code } = await run(50, "");
      expect(code).toBe(0);
      expect(indexes(stdout)).toEqual(upTo(50));
    });

    it("writes every line, in order, on process.exit() in the middle of a write", async () => {
      const { stdout, code } = await run(5_000, "process.exit(3);");
      expect(code).toBe(3);
      expect(indexes(stdout)).toEqual(upTo(5_000));
    });

    it("writes every line on a crash (an uncaught exception)", async () => {
      const { stdout, code } = await run(700, `setImmediate(() => { throw new Error("boom"); });`);
      expect(code).toBe(1);
      expect(indexes(stdout)).toEqual(upTo(700));
    });

    it("a reader that stops reading cannot keep the process from exiting: it gives up after exitWaitMs, having written a gapless start", async () => {
      // ~1 MB of lines, far more than a pipe holds; nobody reads for 6 s.
      const { stdout, code, exitedAt } = await run(20_000, `setTimeout(() => process.exit(0), 300);`, { readAfterMs: 6_000, options: "{ exitWaitMs: 500 }" });
      expect(code).toBe(0);
      expect(exitedAt).toBeLessThan(5_000);
      const seen = indexes(stdout);
      expect(seen.length).toBeGreaterThan(100);
      expect(seen.length).toBeLessThan(20_000);
      expect(seen).toEqual(upTo(seen.length));
    });

    it("a reader that comes back within exitWaitMs gets every line, in order — the block that was in flight included", async () => {
      const { stdout, code, exitedAt } = await run(20_000, `setTimeout(() => process.exit(0), 300);`, { readAfterMs: 800, options: "{ exitWaitMs: 5_000 }" });
      expect(code).toBe(0);
      expect(exitedAt).toBeLessThan(5_000);
      expect(indexes(stdout)).toEqual(upTo(20_000));
    });

    it("holds at most backlogLength while nobody reads; the reader then learns how many lines were dropped, and gets the rest in order", async () => {
      const { stdout, code } = await run(
        20_000,
        `setTimeout(() => { log.info({ i: 20_000 }, "after"); setTimeout(() => process.exit(0), 500); }, 1_000);`,
        { readAfterMs: 300, readAfterLogged: true, options: "{ backlogLength: 64 * 1024 }" },
      );
      expect(code).toBe(0);
      const lines = parsed(stdout);
      const warnings = lines.filter((l) => l.msg.startsWith("dropped "));
      const dropped = warnings.reduce((n, l) => n + Number(/^dropped (\d+) log lines: standard output was not being read$/.exec(l.msg)?.[1]), 0);
      const seen = indexes(stdout);
      expect(dropped).toBeGreaterThan(0);
      expect(seen.length + dropped).toBe(20_001);
      expect(seen.at(-1)).toBe(20_000);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
    });
  });
});

describe("gatheredStandardOutput on a terminal nobody reads", () => {
  it("keeps the event loop running (a timer keeps firing) and exits on time: lines wait, not the process", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gathered-tty-"));
    try {
      const source = fileURLToPath(new URL("../../packages/gateway/src/gathered-log-lines.ts", import.meta.url));
      const beats = join(dir, "beats");
      const pidFile = join(dir, "pid");
      const script = join(dir, "tty.mts");
      writeFileSync(
        script,
        `import { appendFileSync } from "node:fs";\n` +
          `import pino from ${JSON.stringify(pathToFileURL(createRequire(source).resolve("pino")).href)};\n` +
          `import { gatheredStandardOutput } from ${JSON.stringify(source)};\n` +
          `appendFileSync(${JSON.stringify(pidFile)}, String(process.pid));\n` +
          `const log = pino({ base: undefined }, gatheredStandardOutput({ exitWaitMs: 300 }));\n` +
          `setInterval(() => appendFileSync(${JSON.stringify(beats)}, "."), 50);\n` +
          `setInterval(() => { for (let i = 0; i < 200; i++) log.info({ i }, "x".repeat(100)); }, 10);\n` +
          `process.on("exit", () => appendFileSync(${JSON.stringify(beats)}, "E"));\n` +
          `setTimeout(() => process.exit(0), 1_500);\n`,
      );
      // \`script\` runs it with stdout on a pseudo-terminal; nobody reads script's own output, so the terminal fills.
      const startedAt = Date.now();
      const child = spawn("script", ["-qfec", `${JSON.stringify(process.execPath)} --import tsx ${JSON.stringify(script)}`, "/dev/null"], {
        stdio: ["ignore", "pipe", "ignore"],
        detached: true,
      });
      child.stdout.pause();
      const read = () => {
        try {
          return readFileSync(beats, "utf8");
        } catch {
          return "";
        }
      };
      // Until it has exited (its own 'exit' listener says so): \`script\` itself then waits on its unread output.
      while (!read().endsWith("E") && Date.now() - startedAt < 8_000) await new Promise((resolve) => setTimeout(resolve, 50));
      const exitedAfter = Date.now() - startedAt;
      process.kill(-(child.pid as number), "SIGKILL");
      // The logging process has a session of its own (the terminal's): should it hang, end it too.
      try {
        process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL");
      } catch {
        // exited, as it should have
      }
      const beaten = read().replace("E", "").length;
      expect(exitedAfter).toBeLessThan(6_000);
      // ~30 beats in 1.5 s; a blocked event loop stops them at the first full terminal buffer.
      expect(beaten).toBeGreaterThan(10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

